"""Images without a registry: a debootstrap base, wheels fetched on the host, `load` into the node.

Containers here do not trust the machine's TLS-intercepting CA, so nothing is
downloaded inside a build: wheels come from the host and are installed with
`--no-index`. `load` plays the role of `kind load docker-image`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from tornado_operator import __version__

from hack import procs
from hack.paths import PAUSE_IMAGE, REPO, Paths, paths

# The local stand-in for python:3.11-slim-bookworm; bump the suffix to rebuild it.
BASE_IMAGE = "tornado-operator.local/bookworm-python3:1"
# Image tags are the project's version, which the operator package owns.
PROJECT_VERSION = __version__
TEMPLATE_IMAGE = f"tornado-operator/service-template:{PROJECT_VERSION}"
OPERATOR_IMAGE = f"tornado-operator/operator:{PROJECT_VERSION}"
CONSUMER_TEMPLATE_IMAGE = f"tornado-operator/consumer-template:{PROJECT_VERSION}"
# The broker: Debian bookworm's redis-server (7.0.15), installed from .debs fetched on the host
# (deploy/broker/Dockerfile); deploy/broker/redis/redis.yaml names this image.
BROKER_IMAGE = f"tornado-operator/broker-redis:{PROJECT_VERSION}"
BROKER_PACKAGES = ("redis-server",)


def _docker(*args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    return procs.run(["docker", *args], check=check, **kw)


# The containerd a stopped dockerd ran: its pid file may outlive it.
DOCKERD_CONTAINERD_PID = Path("/var/run/docker/containerd/containerd.pid")


def _clear_stale_containerd_pid(pid_file: Path = DOCKERD_CONTAINERD_PID) -> bool:
    """Remove the pid file of dockerd's containerd when that pid is no containerd (True if so).

    A dockerd that finds the pid alive takes its containerd for running ("libcontainerd:
    containerd is still running"), waits for a socket nobody opens and exits with "timeout
    waiting for containerd to start". The pid may be anything's by then: kill(pid, 0), which
    dockerd asks, also answers for a thread (seen: a thread of a local cluster's pause process).
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        comm = ""
    if comm == "containerd":
        return False
    pid_file.unlink(missing_ok=True)
    return True


def ensure_docker(p: Paths | None = None) -> None:
    """Start dockerd when no engine answers (machines without a service manager)."""
    p = p or paths()
    if _docker("info", check=False, timeout=20).returncode == 0:
        return
    if not shutil.which("dockerd"):
        raise RuntimeError(
            "Docker is not installed: run `make prereqs` (apt-get install docker.io)."
        )
    _clear_stale_containerd_pid()
    procs.start(p, "dockerd", ["dockerd", "--host", "unix:///var/run/docker.sock"])
    procs.wait_until(
        p,
        "dockerd",
        lambda: _docker("info", check=False, timeout=10).returncode == 0,
        60,
        "docker info",
    )


def ensure_base_image(p: Paths | None = None) -> str:
    """A Debian bookworm image with python3 and venv, made by debootstrap and `docker import`."""
    p = p or paths()
    ensure_docker(p)
    if _docker("image", "inspect", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    tarball = p.cache / "images" / f"{BASE_IMAGE.replace('/', '_').replace(':', '_')}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=p.cache) as root:
            procs.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=python3,python3-venv,ca-certificates",
                    "bookworm",
                    root,
                ]
            )
            # Keep the image small: apt lists and caches are not needed at run time.
            for junk in ("var/cache/apt", "var/lib/apt/lists"):
                shutil.rmtree(Path(root) / junk, ignore_errors=True)
            procs.run(["tar", "-C", root, "-cf", str(tarball) + ".part", "."])
        os.replace(str(tarball) + ".part", tarball)
    procs.run(["docker", "import", str(tarball), BASE_IMAGE])
    return BASE_IMAGE


OFFICIAL_BASE = "python:3.11-slim-bookworm"


@functools.cache
def default_base() -> str:
    """The official Python image when Docker has or can pull it (kind users), else the local one."""
    ensure_docker()
    for args in (["image", "inspect", OFFICIAL_BASE], ["pull", "-q", OFFICIAL_BASE]):
        if _docker(*args, check=False, timeout=300).returncode == 0:
            return OFFICIAL_BASE
    return ensure_base_image()


def fetch_wheels(dest: Path, *pip_args: str) -> None:
    """Wheels for the image's Python (3.11, same glibc family as this host), fetched on the host."""
    dest.mkdir(parents=True, exist_ok=True)
    procs.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(dest), *pip_args])


def fetch_debs(dest: Path, base: str, packages: tuple[str, ...]) -> list[str]:
    """The .debs `packages` add to the image `base`, fetched on the host by apt.

    apt resolves against the base image's own dpkg status file, so exactly what the base
    lacks is fetched (the base and this host are both Debian bookworm).
    """
    dest.mkdir(parents=True, exist_ok=True)
    status = _docker(
        "run", "--rm", "--network", "none", "--entrypoint", "cat", base, "/var/lib/dpkg/status"
    ).stdout
    status_file = dest.parent / "dpkg-status"
    status_file.write_text(status)
    plan = procs.run(
        [
            "apt-get",
            "-s",
            "-o",
            f"Dir::State::status={status_file}",
            "install",
            "--no-install-recommends",
            *packages,
        ]
    ).stdout
    wanted = []
    for line in plan.splitlines():
        if line.startswith("Inst "):
            name, version = line.split()[1], line.split("(", 1)[1].split()[0]
            wanted.append(f"{name}={version}")
    if not wanted:
        raise RuntimeError(f"apt found nothing to install for {packages} on {base}")
    procs.run(["apt-get", "download", "-q", *wanted], cwd=dest)
    status_file.unlink()
    return wanted


def build_image(
    ref: str,
    dockerfile: Path,
    context: Path | None = None,
    wheel_args: tuple[str, ...] = (),
    base_image: str | None = None,
    debs: tuple[str, ...] = (),
) -> str:
    """Build `ref` from `dockerfile`, `context`, a `wheels/` folder made from `wheel_args`
    and, with `debs`, a `debs/` folder of those Debian packages and what they need."""
    if ref.endswith(":latest") or ":" not in ref.rsplit("/", 1)[-1]:
        raise ValueError(f"image {ref!r} needs an explicit tag other than latest")
    base = base_image or default_base()
    with tempfile.TemporaryDirectory(prefix="tornado-build-") as tmp:
        ctx = Path(tmp) / "ctx"
        if context is not None:
            shutil.copytree(
                context,
                ctx,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", ".*cache"),
            )
        else:
            ctx.mkdir()
        cache = paths().cache / "wheels"
        cache.mkdir(parents=True, exist_ok=True)
        if wheel_args:
            # pip's own cache makes a warm wheel fetch cheap; the folder is per build.
            fetch_wheels(ctx / "wheels", "--find-links", str(cache), *wheel_args)
            for w in (ctx / "wheels").glob("*.whl"):
                if not w.name.startswith("tornado_operator-"):
                    shutil.copy2(w, cache / w.name)
        if debs:
            fetch_debs(ctx / "debs", base, debs)
        r = procs.run(
            [
                "docker",
                "build",
                "-q",
                # Nothing is fetched inside a build, so its steps need no network (and do not
                # depend on Docker's bridge being there).
                "--network",
                "none",
                "-f",
                str(dockerfile),
                "--build-arg",
                f"BASE_IMAGE={base}",
                "-t",
                ref,
                str(ctx),
            ],
            check=False,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
        if r.returncode != 0:
            raise RuntimeError(
                f"docker build of {ref} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
            )
    return ref


def build_template_image() -> str:
    tpl = REPO / "service_template"
    return build_image(
        TEMPLATE_IMAGE, tpl / "Dockerfile", tpl, ("-r", str(tpl / "requirements.txt"))
    )


def build_operator_image() -> str:
    return build_image(OPERATOR_IMAGE, REPO / "operator" / "Dockerfile", None, (str(REPO),))


def build_consumer_template_image() -> str:
    tpl = REPO / "service_template" / "consumer"
    return build_image(
        CONSUMER_TEMPLATE_IMAGE, tpl / "Dockerfile", tpl, ("-r", str(tpl / "requirements.txt"))
    )


def build_broker_image() -> str:
    broker = REPO / "deploy" / "broker"
    return build_image(BROKER_IMAGE, broker / "Dockerfile", broker, debs=BROKER_PACKAGES)


def _ctr(p: Paths) -> list[str]:
    return ["ctr", "--address", str(p.containerd_sock), "-n", "k8s.io"]


def load(ref: str, p: Paths | None = None) -> None:
    """Put a Docker image into the node's containerd, like `kind load docker-image`."""
    p = p or paths()
    save = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
    imp = subprocess.run(
        [*_ctr(p), "images", "import", "-"],
        stdin=save.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert save.stdout is not None
    save.stdout.close()
    if save.wait() != 0 or imp.returncode != 0:
        raise RuntimeError(f"loading {ref} into the node failed: {imp.stderr.strip()}")


def has_image(p: Paths, ref: str) -> bool:
    out = procs.run([*_ctr(p), "images", "ls", "-q"], check=False).stdout.split()
    return _normalise(ref) in out


def _normalise(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{ref}"
    return ref


def import_binary_image(p: Paths, ref: str, binary: Path, entrypoint: list[str]) -> None:
    """Make a one-layer image holding a static binary and import it, without Docker.

    The addons (pause, CoreDNS, metrics-server) are single static Go binaries,
    so the cluster starts on a machine whose Docker is not running.
    """
    if has_image(p, ref):
        return
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), arcname=binary.name)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with open(binary, "rb") as f:
            tar.addfile(info, f)
        tmp = tarfile.TarInfo("tmp/")
        tmp.type = tarfile.DIRTYPE
        tmp.mode = 0o1777
        tar.addfile(tmp)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65532:65532"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "created": "1970-01-01T00:00:00Z",
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": ["layer.tar"]}]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (
            ("layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    r = subprocess.run(
        [*_ctr(p), "images", "import", "-"],
        input=archive.getvalue(),
        capture_output=True,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"importing {ref} failed: {r.stderr.decode(errors='replace').strip()}")


def ensure_pause_image(p: Paths) -> None:
    import_binary_image(p, PAUSE_IMAGE, p.bin / "pause", ["/pause"])
