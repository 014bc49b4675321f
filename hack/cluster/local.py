"""The local offline cluster: control plane as host processes, this machine as the node.

Everything it adds to the host (processes, mounts, iptables rules, links,
addresses) it also removes in `down`. Certificates and the containerd image
store survive `down`, so a warm `up` neither regenerates nor reloads them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hack import images, procs
from hack.cluster import addons, fakenodes, hermetic, netpol
from hack.kubetools import kubectl
from hack.paths import (
    API_PORT,
    BRIDGE,
    DNS_IP,
    KUBERNETES_VERSION,
    NODE_IP,
    NODE_NAME,
    PAUSE_IMAGE,
    POD_CIDR,
    SERVICE_CIDR,
    Paths,
)

# Control plane first, node last: `down` walks this backwards.
COMPONENTS = [
    "containerd",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
]
# The controller manager's and scheduler's own client limits (default 20 and 50 requests/s).
SCALE_CLIENT_FLAGS = ["--kube-api-qps=500", "--kube-api-burst=1000"]
IPT_COMMENT = "tornado-operator local cluster"
# Docker sets the FORWARD policy to DROP; pods on our bridge must still talk.
FORWARD_RULES = [
    ["FORWARD", d, BRIDGE, "-m", "comment", "--comment", IPT_COMMENT, "-j", "ACCEPT"]
    for d in ("-i", "-o")
]


class PrerequisiteError(RuntimeError):
    """Something the host lacks; the message is one sentence naming it."""


def check_prerequisites(p: Paths) -> None:
    if platform.system() != "Linux":
        raise PrerequisiteError(f"The local cluster needs Linux; this is {platform.system()}.")
    if os.geteuid() != 0:
        raise PrerequisiteError("The local cluster needs root (it runs kubelet and containerd).")
    controllers = _cgroup_controllers()
    missing = [c for c in ("cpu", "cpuacct", "cpuset", "memory") if c not in controllers]
    if missing:
        raise PrerequisiteError(
            f"cgroup controllers missing: {', '.join(missing)} (kubelet needs them)."
        )
    for cmd in ("containerd", "runc", "iptables", "iptables-save", "conntrack", "ip", "ipset"):
        if not shutil.which(cmd):
            raise PrerequisiteError(f"`{cmd}` is not installed: run `make prereqs`.")
    if not Path("/usr/lib/cni/bridge").exists():
        raise PrerequisiteError("CNI plugins missing (/usr/lib/cni/bridge): run `make prereqs`.")
    built = [c for c in COMPONENTS if c != "containerd"]
    for b in (*built, "kubeadm", "kubectl", "coredns", "metrics-server", "pause", "kube-router"):
        if not (p.bin / b).exists():
            raise PrerequisiteError(
                f"{b} {KUBERNETES_VERSION} is not built in {p.bin}: run `make prereqs`."
            )


def _cgroup_controllers() -> set[str]:
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
            name, _hier, _n, enabled = line.split()
            if enabled == "1":
                found.add(name)
    return found


# ---------------------------------------------------------------- status


def api_healthy(p: Paths) -> bool:
    ctx = ssl.create_default_context(cafile=str(p.pki / "ca.crt"))
    ctx.load_cert_chain(
        str(p.pki / "apiserver-kubelet-client.crt"), str(p.pki / "apiserver-kubelet-client.key")
    )
    try:
        with urllib.request.urlopen(
            f"https://{NODE_IP}:{API_PORT}/readyz", context=ctx, timeout=3
        ) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def running_components(p: Paths) -> dict[str, int | None]:
    return {name: procs.pid_of(p, name) for name in COMPONENTS}


def is_up(p: Paths) -> bool:
    return all(running_components(p).values()) and p.kubeconfig.exists() and api_healthy(p)


# ---------------------------------------------------------------- up


def up(p: Paths, log: Callable[[str], None] = print) -> None:
    check_prerequisites(p)
    _wait_for_restart(p, log)
    if is_up(p) or _up_but_slow(p):
        # A cluster started before the hermetic rules existed gets them now.
        added = hermetic.ensure(before=FORWARD_RULES)
        what = "added the missing hermetic network rules" if added else "nothing changed"
        # A cluster started before the NetworkPolicy enforcer existed gets it now.
        if netpol.ensure(p):
            what = f"started the NetworkPolicy enforcer; {what}"
        log(f"cluster is already up; {what}. KUBECONFIG={p.kubeconfig}")
        return
    if any(running_components(p).values()):
        log("a partly started cluster was found; cleaning it up first")
    down(p, log=lambda _m: None)
    t0 = time.monotonic()
    _prepare_host(p)
    _write_pki(p)
    _write_configs(p)
    _start_containerd(p)
    _start_control_plane(p)
    _start_node(p)
    log(f"node Ready after {time.monotonic() - t0:.1f}s")
    # Before the add-ons and any workload: NetworkPolicies are enforced from the first pod on.
    netpol.start(p)
    addons.install(p)
    log(f"cluster up in {time.monotonic() - t0:.1f}s. KUBECONFIG={p.kubeconfig}")


def _up_but_slow(p: Paths, patience: float = 60) -> bool:
    """Every component runs but /readyz was slow (a loaded node): wait, never tear it down."""
    if not (all(running_components(p).values()) and p.kubeconfig.exists()):
        return False
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if api_healthy(p):
            return True
        time.sleep(2)
    return False


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    if not path.exists():
        raise PrerequisiteError(f"kernel setting {key} is missing (br_netfilter not loaded?).")
    path.write_text(value)


def _prepare_host(p: Paths) -> None:
    for d in (p.state, p.run, p.logs, p.pki, p.cni_conf, p.kubelet_root):
        d.mkdir(parents=True, exist_ok=True)
    if shutil.which("modprobe"):
        for mod in ("br_netfilter", "overlay"):
            procs.run(["modprobe", mod], check=False)
    _sysctl("net.bridge.bridge-nf-call-iptables", "1")
    _sysctl("net.ipv4.ip_forward", "1")
    # The node's address is ours alone, on loopback: no dependency on the
    # machine's own interfaces, and nothing routable leaves the host.
    if NODE_IP not in procs.run(["ip", "-4", "addr", "show", "dev", "lo"]).stdout:
        procs.run(["ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo"])
    for rule in FORWARD_RULES:
        if procs.run(["iptables", "-C", *rule], check=False).returncode != 0:
            procs.run(["iptables", "-I", *rule])
    # Before any pod runs: nothing a pod sends, nor anything sent to a Service IP, leaves the host.
    hermetic.ensure(before=FORWARD_RULES)


def _write_pki(p: Paths) -> None:
    """Certificates and kubeconfigs from kubeadm's own phases, made once and kept."""
    if (p.pki / "ca.crt").exists() and p.kubeconfig.exists():
        return
    cfg = p.state / "kubeadm.yaml"
    cfg.write_text(
        f"""apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {{advertiseAddress: {NODE_IP}, bindPort: {API_PORT}}}
nodeRegistration: {{name: {NODE_NAME}}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v{KUBERNETES_VERSION}
clusterName: tornado-local
controlPlaneEndpoint: "{NODE_IP}:{API_PORT}"
certificatesDir: {p.pki}
networking: {{serviceSubnet: {SERVICE_CIDR}, podSubnet: {POD_CIDR}, dnsDomain: cluster.local}}
apiServer: {{certSANs: ["127.0.0.1", "localhost", "{NODE_IP}"]}}
"""
    )
    kubeadm = str(p.bin / "kubeadm")
    for phase in (["certs", "all"], ["kubeconfig", "all", "--kubeconfig-dir", str(p.state)]):
        r = procs.run([kubeadm, "init", "phase", *phase, "--config", str(cfg)], check=False)
        if r.returncode != 0:
            raise procs.StartError(f"kubeadm init phase {phase[0]} failed:\n{r.stderr[-2000:]}")


def _write_configs(p: Paths) -> None:
    (p.state / "containerd.toml").write_text(
        f"""version = 2
root = "{p.state / "containerd"}"
state = "{p.run / "containerd"}"
[grpc]
  address = "{p.containerd_sock}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = {"true" if _lacks_cap_sys_resource() else "false"}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{p.cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"""
    )
    (p.cni_conf / "10-tornado.conflist").write_text(
        f"""{{
  "cniVersion": "1.0.0",
  "name": "tornado-local",
  "plugins": [
    {{"type": "bridge", "bridge": "{BRIDGE}", "isGateway": true, "ipMasq": true,
      "hairpinMode": true,
      "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_CIDR}"}}]],
               "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}},
    {{"type": "loopback"}}
  ]
}}
"""
    )
    (p.state / "kubelet.yaml").write_text(
        f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{p.containerd_sock}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# The pause image is not pinned by containerd 1.6.20, so image GC must never run.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {p.pki / "ca.crt"}}}
authorization: {{mode: Webhook}}
clusterDNS: [{DNS_IP}]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
address: {NODE_IP}
healthzBindAddress: 127.0.0.1
healthzPort: 10248
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
"""
    )
    (p.state / "kube-proxy.yaml").write_text(
        f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {{kubeconfig: {p.state / "admin.conf"}}}
hostnameOverride: {NODE_NAME}
clusterCIDR: {POD_CIDR}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {{maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"""
    )


def _lacks_cap_sys_resource() -> bool:
    """Some sandboxes drop CAP_SYS_RESOURCE; then no process may lower its OOM score.

    The kubelet asks for -998 on pod sandboxes, runc fails with "can't get
    final child's PID from pipe", so containerd must clamp scores to its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return not int(line.split()[1], 16) & (1 << 24)
    return False


def _start_containerd(p: Paths) -> None:
    procs.start(p, "containerd", ["containerd", "--config", str(p.state / "containerd.toml")])
    ctr = ["ctr", "--address", str(p.containerd_sock), "version"]
    procs.wait_until(
        p, "containerd", lambda: procs.run(ctr, check=False).returncode == 0, 30, "its socket"
    )
    images.ensure_pause_image(p)


def _healthz(url: str) -> bool:
    ctx = ssl._create_unverified_context()  # local probe of our own component's health endpoint
    with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
        return bool(r.status == 200)


def _start_control_plane(p: Paths) -> None:
    pki = p.pki
    etcd_data = p.state / "etcd"
    shutil.rmtree(etcd_data, ignore_errors=True)  # every `up` starts from an empty cluster
    procs.start(
        p,
        "etcd",
        [
            str(p.bin / "etcd"),
            "--name",
            NODE_NAME,
            "--data-dir",
            str(etcd_data),
            "--listen-client-urls",
            "https://127.0.0.1:2379",
            "--advertise-client-urls",
            "https://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            f"{NODE_NAME}=http://127.0.0.1:2380",
            "--listen-metrics-urls",
            "http://127.0.0.1:2381",
            "--cert-file",
            str(pki / "etcd/server.crt"),
            "--key-file",
            str(pki / "etcd/server.key"),
            "--client-cert-auth",
            "--trusted-ca-file",
            str(pki / "etcd/ca.crt"),
            "--unsafe-no-fsync",
            "--snapshot-count",
            "10000",
        ],
    )
    procs.wait_until(p, "etcd", lambda: _healthz("http://127.0.0.1:2381/health"), 30, "health")

    procs.start(
        p,
        "kube-apiserver",
        [
            str(p.bin / "kube-apiserver"),
            f"--advertise-address={NODE_IP}",
            f"--bind-address={NODE_IP}",
            f"--secure-port={API_PORT}",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            # As kind (kubeadm): NodeRestriction on top of the default set, which has PodSecurity.
            "--enable-admission-plugins=NodeRestriction",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--enable-bootstrap-token-auth=true",
            f"--etcd-cafile={pki / 'etcd/ca.crt'}",
            f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
            "--etcd-servers=https://127.0.0.1:2379",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--requestheader-allowed-names=front-proxy-client",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            "--enable-aggregator-routing=true",
        ],
    )
    procs.wait_until(p, "kube-apiserver", lambda: api_healthy(p), 90, "/readyz")
    # kubeadm's admin.conf authenticates as group kubeadm:cluster-admins; kubeadm
    # binds that group during init, which we do not run, so bind it here.
    kubectl(
        "create",
        "clusterrolebinding",
        "kubeadm:cluster-admins",
        "--clusterrole=cluster-admin",
        "--group=kubeadm:cluster-admins",
        kubeconfig=p.state / "super-admin.conf",
        check=False,
    )

    procs.start(
        p,
        "kube-controller-manager",
        [
            str(p.bin / "kube-controller-manager"),
            f"--kubeconfig={p.state / 'controller-manager.conf'}",
            f"--authentication-kubeconfig={p.state / 'controller-manager.conf'}",
            f"--authorization-kubeconfig={p.state / 'controller-manager.conf'}",
            "--bind-address=127.0.0.1",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--cluster-name=tornado-local",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--leader-elect=false",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=true",
            # Faster autoscaling feedback than the 15s default, so HPA tests finish sooner.
            "--horizontal-pod-autoscaler-sync-period=5s",
            # client-go's default 20 requests/s would make the controllers, not the API server,
            # the limit of a scale test (1000 Deployments are 1000 ReplicaSets and 2000 pods).
            *SCALE_CLIENT_FLAGS,
        ],
    )
    procs.start(
        p,
        "kube-scheduler",
        [
            str(p.bin / "kube-scheduler"),
            f"--kubeconfig={p.state / 'scheduler.conf'}",
            f"--authentication-kubeconfig={p.state / 'scheduler.conf'}",
            f"--authorization-kubeconfig={p.state / 'scheduler.conf'}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            *SCALE_CLIENT_FLAGS,
        ],
    )
    procs.wait_until(
        p,
        "kube-controller-manager",
        lambda: _healthz("https://127.0.0.1:10257/healthz"),
        60,
        "healthz",
    )
    procs.wait_until(
        p, "kube-scheduler", lambda: _healthz("https://127.0.0.1:10259/healthz"), 60, "healthz"
    )


def _start_node(p: Paths) -> None:
    procs.start(
        p,
        "kubelet",
        [
            str(p.bin / "kubelet"),
            f"--config={p.state / 'kubelet.yaml'}",
            f"--kubeconfig={p.state / 'kubelet.conf'}",
            f"--node-ip={NODE_IP}",
            f"--hostname-override={NODE_NAME}",
            f"--root-dir={p.kubelet_root}",
            f"--cert-dir={p.state / 'kubelet-pki'}",
        ],
    )
    procs.start(
        p, "kube-proxy", [str(p.bin / "kube-proxy"), f"--config={p.state / 'kube-proxy.yaml'}"]
    )

    def node_ready() -> bool:
        r = kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            kubeconfig=p.kubeconfig,
            check=False,
        )
        return r.stdout.strip() == "True"

    procs.wait_until(p, "kubelet", node_ready, 90, "node Ready")
    procs.wait_until(
        p, "kube-proxy", lambda: _healthz("http://127.0.0.1:10256/healthz"), 30, "healthz"
    )


# ---------------------------------------------------------------- control-plane restart

# etcd and the API server, in the order `up` starts them; a restart stops them in reverse.
RESTARTED = ("etcd", "kube-apiserver")


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


def _restart_mark(p: Paths) -> Path:
    return p.run / "control-plane-restart.pid"


def _restarting(p: Paths) -> bool:
    """A restart is under way: its mark names a live process (a dead one's mark is stale)."""
    try:
        os.kill(int(_restart_mark(p).read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _wait_for_restart(p: Paths, log: Callable[[str], None], patience: float = 180) -> None:
    """While etcd and the API server restart, the cluster is not broken: `up` (as any test
    session's start may call it) waits instead of tearing it down and starting an empty one."""
    deadline = time.monotonic() + patience
    if _restarting(p):
        log("etcd and kube-apiserver are restarting; waiting for them")
    while _restarting(p) and time.monotonic() < deadline:
        time.sleep(1)


def stop_control_plane(p: Paths) -> dict[str, list[str]]:
    """Stop kube-apiserver, then etcd (SIGTERM, as `down` does); return their command lines.

    etcd's data directory is kept, unlike `up`, which starts from an empty one: start them again
    with `start_control_plane` and the cluster is the same, only its API was gone meanwhile.
    Until then a mark tells `up` that the cluster is restarting, not broken.
    """
    argv: dict[str, list[str]] = {}
    for name in RESTARTED:
        pid = procs.pid_of(p, name)
        if pid is None:
            raise procs.StartError(f"{name} is not running: nothing to restart (run `up`)")
        argv[name] = _cmdline(pid)
    _restart_mark(p).write_text(str(os.getpid()))
    for name in reversed(RESTARTED):
        procs.stop(p, name, grace=30)
    return argv


def start_control_plane(p: Paths, argv: dict[str, list[str]]) -> float:
    """Start etcd, then kube-apiserver, with the command lines `stop_control_plane` returned;
    return once /readyz answers 200 (every post-start hook done), with the seconds it took."""
    t0 = time.monotonic()
    try:
        procs.start(p, "etcd", argv["etcd"])
        procs.wait_until(p, "etcd", lambda: _healthz("http://127.0.0.1:2381/health"), 30, "health")
        procs.start(p, "kube-apiserver", argv["kube-apiserver"])
        procs.wait_until(p, "kube-apiserver", lambda: api_healthy(p), 90, "/readyz")
    finally:
        _restart_mark(p).unlink(missing_ok=True)
    return time.monotonic() - t0


def restart_control_plane(p: Paths, log: Callable[[str], None] = print) -> float:
    """Stop and start etcd and kube-apiserver, keeping the data; seconds the API was gone."""
    t0 = time.monotonic()
    start_control_plane(p, stop_control_plane(p))
    gone = time.monotonic() - t0
    log(f"etcd and kube-apiserver restarted; the API answered /readyz again after {gone:.1f}s")
    return gone


# ---------------------------------------------------------------- down


def down(p: Paths, log: Callable[[str], None] = print) -> None:
    stopped = ["kwok"] if fakenodes.stop(p) else []
    if netpol.stop(p):
        stopped.append(netpol.NAME)
    for name in reversed(COMPONENTS):
        if name == "containerd":
            _kill_containers(p)
        if procs.stop(p, name, grace=20 if name == "containerd" else 10):
            stopped.append(name)
    if (p.bin / "kube-proxy").exists():
        procs.run([str(p.bin / "kube-proxy"), "--cleanup"], check=False)
    _kill_orphan_shims(p)
    _remove_chains()
    netpol.cleanup()  # its ipsets, now that no chain uses them
    hermetic.remove()
    for rule in FORWARD_RULES:
        while procs.run(["iptables", "-D", *rule], check=False).returncode == 0:
            pass
    _unmount_under(p.run, p.kubelet_root, p.state / "containerd")
    procs.run(["ip", "link", "del", BRIDGE], check=False)
    procs.run(["ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo"], check=False)
    _remove_kube_cgroups()
    shutil.rmtree(p.run, ignore_errors=True)
    shutil.rmtree(p.state / "etcd", ignore_errors=True)
    log(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}; host cleaned up")


def _kill_containers(p: Paths) -> None:
    if procs.pid_of(p, "containerd") is None:
        return
    ctr = ["ctr", "--address", str(p.containerd_sock), "-n", "k8s.io"]
    tasks = procs.run([*ctr, "tasks", "ls", "-q"], check=False).stdout.split()
    for t in tasks:
        procs.run([*ctr, "tasks", "kill", "-s", "SIGKILL", t], check=False)
    deadline = time.monotonic() + 15
    for t in tasks:
        while time.monotonic() < deadline:
            if procs.run([*ctr, "tasks", "delete", t], check=False).returncode == 0:
                break
            time.sleep(0.2)
    for c in procs.run([*ctr, "containers", "ls", "-q"], check=False).stdout.split():
        procs.run([*ctr, "containers", "delete", c], check=False)


def _remove_chains(prefixes: tuple[str, ...] = ("CNI-", "KUBE-")) -> None:
    """Delete the chains (and the jumps to them) that CNI, kubelet and kube-proxy added."""
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if not shutil.which(save):
            continue
        for table in ("nat", "filter", "mangle"):
            dump = procs.run([save, "-t", table], check=False).stdout
            chains = {ln[1:].split()[0] for ln in dump.splitlines() if ln.startswith(":")}
            ours = {c for c in chains if c.startswith(prefixes)}
            for ln in dump.splitlines():
                words = ln.split()
                if (
                    ln.startswith("-A ")
                    and words[1] not in ours
                    and any(f"-j {c}" in ln for c in ours)
                ):
                    procs.run([tool, "-t", table, "-D", *shlex.split(ln[3:])], check=False)
            for c in ours:
                procs.run([tool, "-t", table, "-F", c], check=False)
            for c in ours:
                procs.run([tool, "-t", table, "-X", c], check=False)


def _kill_orphan_shims(p: Paths) -> None:
    """Shims outlive containerd by design; ours are recognised by our socket path."""
    procs.run(
        ["pkill", "-KILL", "-f", f"containerd-shim.*-address {p.containerd_sock}"], check=False
    )


def _unmount_under(*roots: Path) -> None:
    prefixes = tuple(str(r) for r in roots)
    for _ in range(3):
        mounts = [
            line.split()[1].replace("\\040", " ")
            for line in Path("/proc/mounts").read_text().splitlines()
        ]
        ours = [m for m in mounts if m.startswith(prefixes)]
        if not ours:
            return
        for m in sorted(ours, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)


def _remove_kube_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / "kubepods"
        if not top.is_dir():
            continue
        for d in sorted(
            (x for x in top.rglob("*") if x.is_dir()), key=lambda x: len(str(x)), reverse=True
        ):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
