"""A client pod inside the cluster, for tests whose requests must go through a Service the way a
real caller's do (DNS name, ClusterIP, kube-proxy), never through port-forward or the API proxy.

The pod runs the template image (it has Python) under Pod Security "restricted" and does nothing
until a test runs code in it with `run_python`. `LOAD_SCRIPT` is the load generator run there.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from hack.kubetools import binary, kubectl

PYTHON = "/opt/venv/bin/python"
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
_IDLE = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "time.sleep(3600)\n"
)


# Every client pod carries this label. TornadoServices admit only their TornadoService callers by
# default (their NetworkPolicy), so one called from a client pod lets it in: ALLOW_CLIENTS is
# the spec.ingress that does.
CLIENT_LABELS = {"app.kubernetes.io/name": "test-client"}
ALLOW_CLIENTS = {"from": [{"podSelector": {"matchLabels": CLIENT_LABELS}}]}


def client_pod(namespace: str, image: str, name: str = "client", cpu: str = "50m") -> str:
    """Start an idle client pod and wait until it runs; returns its name."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(CLIENT_LABELS)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "client",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": [PYTHON, "-c", _IDLE],
                    "resources": {"requests": {"cpu": cpu, "memory": "32Mi"}},
                    "securityContext": RESTRICTED,
                }
            ],
        },
    }
    kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s",
        timeout=130,
    )  # fmt: skip
    return name


class Load:
    """LOAD_SCRIPT running in a client pod until `stop()` (or its own time bound)."""

    def __init__(
        self, namespace: str, pod: str, url: str, mode: str, rate: float, workers: int,
        max_seconds: float,
    ) -> None:  # fmt: skip
        self.max_seconds = max_seconds
        argv = [PYTHON, "-c", LOAD_SCRIPT, url, mode, str(rate), str(max_seconds), str(workers)]
        self.proc = subprocess.Popen(
            [binary("kubectl"), "-n", namespace, "exec", "-i", pod, "--", *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def stop(self) -> dict[str, Any]:
        """Close its stdin, so it stops; its totals."""
        out, err = self.proc.communicate(input="", timeout=self.max_seconds + 60)
        lines = out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"load script failed ({self.proc.returncode}):\n{out}\n{err}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_python(
    namespace: str, pod: str, code: str, *args: str, timeout: float = 60
) -> dict[str, Any]:
    """Run `code` in the pod (`python -c code args...`); it prints one JSON object last."""
    proc = kubectl(
        "-n", namespace, "exec", pod, "--", PYTHON, "-c", code, *args,
        timeout=timeout, check=False,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"python in pod {pod} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# One GET, its status and body: a single verified request before any loop.
GET_ONCE = """
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except Exception as e:
    print(json.dumps({"status": None, "error": repr(e)}))
"""

# One TCP connection attempt: how it ended and how long it took.
CONNECT_ONCE = """
import json, socket, sys, time
t0 = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    outcome = "connected"
except OSError as e:
    outcome = type(e).__name__
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - t0}))
"""

# Load through a Service: `python -c LOAD_SCRIPT URL MODE RATE SECONDS WORKERS`.
# MODE "new": a new TCP connection per request; "keepalive": one HTTP/1.1 connection per worker,
# reopened only when the server says `Connection: close` or closes it. RATE requests/s in all,
# paced per worker. It stops when its stdin closes (`kubectl exec -i`, the test's end of the pipe)
# or after SECONDS, whichever is first, and nothing is retried. Prints one JSON line:
# {"sent", "ok", "failed", "errors", "seconds", "rate", "reconnects"}.
LOAD_SCRIPT = r"""
import http.client, json, sys, threading, time, urllib.parse
url, mode = sys.argv[1], sys.argv[2]
rate, seconds, workers = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
u = urllib.parse.urlsplit(url)
host, port, path = u.hostname, u.port or 80, u.path or "/"
lock = threading.Lock()
totals = {"sent": 0, "ok": 0, "failed": 0, "reconnects": 0}
errors = {}
interval = workers / rate
t_start = time.monotonic()
t_end = t_start + seconds
stop = threading.Event()

def watch_stdin():
    sys.stdin.read()
    stop.set()

threading.Thread(target=watch_stdin, daemon=True).start()

def record(ok, err=None):
    with lock:
        totals["sent"] += 1
        totals["ok" if ok else "failed"] += 1
        if err:
            errors[err] = errors.get(err, 0) + 1

def worker(i):
    conn = None
    n = 0
    next_at = t_start + i * interval / workers
    while True:
        now = time.monotonic()
        if now >= t_end or stop.is_set():
            break
        if next_at > now:
            time.sleep(next_at - now)
        next_at += interval
        n += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=5)
                if mode == "keepalive" and n > 1:
                    with lock:
                        totals["reconnects"] += 1
            headers = {} if mode == "keepalive" else {"Connection": "close"}
            conn.request("GET", path, headers=headers)
            rsp = conn.getresponse()
            body = rsp.read()
            ok = rsp.status == 200 and b"Hello" in body
            record(ok, None if ok else f"HTTP {rsp.status}")
            if mode != "keepalive" or rsp.will_close:
                conn.close()
                conn = None
        except Exception as e:
            # A keep-alive connection the server closed between two requests is the client's
            # to reopen; the request on it still counts as failed: nothing is retried.
            record(False, type(e).__name__)
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()

threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.monotonic() - t_start
rate = totals["sent"] / elapsed
print(json.dumps({**totals, "errors": errors, "seconds": elapsed, "rate": rate}))
"""
