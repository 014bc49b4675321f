"""A kind node image assembled offline: no registry, no Dockerfile, no `kind build node-image`.

`kind build node-image` pulls etcd, CoreDNS, pause, kindnetd and local-path images from a
registry and calls `ctr images import --label`, which Debian's containerd 1.6 lacks; so this
module keeps kind's node-image contract itself:

- the base is a debootstrap bookworm with Debian's systemd, containerd, runc, CNI plugins and
  iptables (cached as a tarball, like images.py's Python base);
- the project's kubeadm, kubelet and kubectl (hack/build-binaries.sh) in /usr/bin;
- the control-plane images preloaded in containerd's k8s.io namespace under the names
  `kubeadm config images list` prints, each one layer made from the project's builds: the
  Kubernetes binaries, etcd, CoreDNS, pause (kube-proxy's image also carries Debian's iptables);
  they are imported with a containerd of the machine's (the node's containerd is the same Debian
  build) whose root is the image's /var/lib/containerd, so nothing is imported at boot;
- /kind/version, /kind/manifests/default-cni.yaml (a static ptp CNI, one node) and
  default-storage.yaml (a default StorageClass `standard`, static volumes);
- the project's own entrypoint, kubelet unit and containerd configuration (files/); the
  entrypoint also keeps the node hermetic (rules in the node's own network namespace);
- the NetworkPolicy enforcer the local cluster runs: the project's kube-router, firewall only
  (iptables and Debian's ipset), as a systemd unit with the local cluster's flags
  (hack/cluster/netpol.py), started once kubeadm has written admin.conf; its wrapper keeps the
  node's hermetic chain first inside kube-router's chains, as the local cluster does;
- runc-nosysresource as containerd's runc, for privileged pods where the machine's bounding set
  lacks CAP_SYS_RESOURCE.

The image is `docker import`ed into the project's engine (engine.py) and cached by version:
the tag is the Kubernetes version and a digest of the recipe (recipe()); the rootfs tarball stays
in the cache.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from hack import procs
from hack.cluster import netpol
from hack.cluster.addons import METRICS_SERVER_IMAGE
from hack.kind_node import engine, kind_bin
from hack.paths import KUBERNETES_VERSION, VERSIONS, Paths, paths

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
REPOSITORY = "tornado-operator.local/kind-node"
# The node's pod and Service subnets, the one place that names them: hack/cluster/kind.py gives
# them to `kind create cluster` (networking.podSubnet and serviceSubnet: kubeadm's, kube-proxy's
# clusterCIDR), the static CNI configuration (one node) and the hermetic chain take them from
# here, kube-router is told the Service range, and `up` routes both from the host to the node.
# The pod subnet is kind's default; the Service subnet is not (kind's 10.96.0.0/16 is the local
# cluster's too, hack/paths.py SERVICE_CIDR, whose hermetic rules reject it on the host).
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.97.0.0/16"
# The node's hermetic chain (files/entrypoint) and the jump to it that files/kube-router-firewall
# keeps first in kube-router's FORWARD and OUTPUT chains, as `iptables -S` prints it.
HERMETIC_CHAIN = "TORNADO-NODE-HERMETIC"
HERMETIC_HOOK = ("-m", "comment", "--comment", "tornado-node-hermetic-first", "-j", HERMETIC_CHAIN)
# kubeadm writes it on the control-plane node; kube-router.path waits for it.
KUBE_ROUTER_KUBECONFIG = "/etc/kubernetes/admin.conf"

BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "iproute2",
    "kmod",
    "procps",
    "ca-certificates",
    "ipset",  # kube-router keeps its address sets with it
)
# Not needed in a node and large: apt's caches, documentation, translations.
JUNK = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")

Log = Callable[[str], None]


def recipe_inputs() -> list[Path]:
    """The files the image is made from, but the built binaries (their versions are in
    versions.env, kube-router's too): this module, files/, the runc wrapper's source, versions.env
    and netpol.py (kube-router's flags)."""
    return [
        HERE / "image.py",
        HERE / "runc-nosysresource/main.go",
        HERE.parent / "versions.env",
        HERE.parent / "cluster/netpol.py",
        *sorted(FILES.iterdir()),
    ]


@functools.cache
def recipe() -> str:
    """A digest of recipe_inputs(): any change to them names (and builds) a new image."""
    h = hashlib.sha256()
    for f in recipe_inputs():
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:10]


def node_image() -> str:
    """The image's name: the Kubernetes version and the recipe, so a change rebuilds it."""
    return f"{REPOSITORY}:v{KUBERNETES_VERSION}-{recipe()}"


def _kubeadm_images(p: Paths) -> dict[str, str]:
    """`kubeadm config images list` for our version, by short name (kube-apiserver, etcd, ...)."""
    out = procs.run(
        [
            str(p.bin / "kubeadm"),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            f"v{KUBERNETES_VERSION}",
        ]
    ).stdout.split()
    return {ref.rsplit("/", 1)[1].split(":")[0]: ref for ref in out}


# ------------------------------------------------------------------ one-layer images


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _layer(entries: Iterable[tuple[str, Path | str | None]]) -> bytes:
    """A layer tarball: (path in image, a file to copy | "->target" for a symlink | None: dir).

    Parent directories are added before their first entry (0755, root's).
    """
    buf = io.BytesIO()
    done: set[str] = set()
    links: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name in ("tmp", "var/tmp") else 0o755
            tar.addfile(_tar_filter(info))
            done.add(name)

        for name, src in entries:
            if name in done:
                continue
            parts = name.split("/")
            for i in range(1, len(parts)):
                parent = "/".join(parts[:i])
                if parent not in done and parent not in links:
                    add_dir(parent)
            if src is None:
                add_dir(name)
            elif isinstance(src, str):
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = src.removeprefix("->")
                info.mode = 0o777
                tar.addfile(_tar_filter(info))
                done.add(name)
                links.add(name)
            else:
                info = tar.gettarinfo(str(src), arcname=name)
                with open(src, "rb") as f:
                    tar.addfile(_tar_filter(info), f)
                done.add(name)
    return buf.getvalue()


def _archive(ref: str, layer: bytes, config: dict[str, object]) -> bytes:
    """A `docker save`-format archive of a one-layer image, which `ctr images import` reads."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "created": "1970-01-01T00:00:00Z",
    }
    cfg_bytes = json.dumps(cfg).encode()
    cfg_name = hashlib.sha256(cfg_bytes).hexdigest() + ".json"
    manifest = [{"Config": cfg_name, "RepoTags": [ref], "Layers": ["layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in (
            ("layer.tar", layer),
            (cfg_name, cfg_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


PATH_ENV = ["PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin"]
MERGED_USR = [("bin", "->usr/bin"), ("sbin", "->usr/sbin"), ("lib", "->usr/lib"),
              ("lib64", "->usr/lib64")]  # fmt: skip


def _binary_image(ref: str, binary: Path, where: str, entrypoint: list[str] | None) -> bytes:
    entries: list[tuple[str, Path | str | None]] = [("tmp", None), (where, binary)]
    config: dict[str, object] = {"Env": PATH_ENV}
    if entrypoint:
        config["Entrypoint"] = entrypoint
    return _archive(ref, _layer(entries), config)


def _shared_libs(rootfs: Path, binaries: list[str]) -> set[str]:
    """The libraries (paths in rootfs) the binaries load, as the rootfs's own ldd says."""
    libs: set[str] = set()
    for b in binaries:
        out = procs.run(["chroot", str(rootfs), "ldd", b]).stdout
        for line in out.splitlines():
            words = line.split()
            path = words[2] if "=>" in words and len(words) > 2 else words[0]
            if path.startswith("/"):
                libs.add(path)
    return libs


def _kube_proxy_image(ref: str, binary: Path, rootfs: Path) -> bytes:
    """kube-proxy with Debian's iptables (nft backend, as on the node) and conntrack.

    The files are the rootfs's own: the binaries, iptables' extensions and the libraries their
    ldd names, at their real paths, with a symlink wherever the loader looks them up by another.
    """
    xt = "usr/lib/x86_64-linux-gnu/xtables"
    plugins = sorted(f"/{xt}/{f.name}" for f in (rootfs / xt).glob("*.so"))
    bins = ["/usr/sbin/xtables-nft-multi", "/usr/sbin/conntrack"]
    wanted = sorted(set(bins) | set(plugins) | _shared_libs(rootfs, bins + plugins))
    # Symlinks resolved inside the rootfs (its absolute links point into it, not the host).
    real = procs.run(["chroot", str(rootfs), "readlink", "-f", *wanted]).stdout.split()
    entries: list[tuple[str, Path | str | None]] = [
        *MERGED_USR,
        ("tmp", None),
        ("run", None),
        ("usr/local/bin/kube-proxy", binary),
    ]
    top_links = {name for name, _ in MERGED_USR}
    for path, target in zip(wanted, real, strict=True):
        rel, tgt = path.lstrip("/"), target.lstrip("/")
        if rel.split("/")[0] in top_links:
            rel = "usr/" + rel
        entries.append((tgt, rootfs / tgt))
        if rel != tgt:
            entries.append((rel, "->/" + tgt))
    for tool in ("iptables", "iptables-save", "iptables-restore",
                 "ip6tables", "ip6tables-save", "ip6tables-restore"):  # fmt: skip
        entries.append((f"usr/sbin/{tool}", "->xtables-nft-multi"))
    if (rootfs / "etc/protocols").exists():
        entries.append(("etc/protocols", rootfs / "etc/protocols"))
    return _archive(ref, _layer(entries), {"Env": PATH_ENV})


def control_plane_archives(p: Paths, rootfs: Path) -> dict[str, bytes]:
    """The images kubeadm's manifests name, each made from the project's own binaries."""
    names = _kubeadm_images(p)
    b = p.bin
    return {
        names["kube-apiserver"]: _binary_image(
            names["kube-apiserver"], b / "kube-apiserver", "usr/local/bin/kube-apiserver", None
        ),
        names["kube-controller-manager"]: _binary_image(
            names["kube-controller-manager"],
            b / "kube-controller-manager",
            "usr/local/bin/kube-controller-manager",
            None,
        ),
        names["kube-scheduler"]: _binary_image(
            names["kube-scheduler"], b / "kube-scheduler", "usr/local/bin/kube-scheduler", None
        ),
        names["etcd"]: _binary_image(names["etcd"], b / "etcd", "usr/local/bin/etcd", None),
        names["coredns"]: _binary_image(names["coredns"], b / "coredns", "coredns", ["/coredns"]),
        names["pause"]: _binary_image(names["pause"], b / "pause", "pause", ["/pause"]),
        names["kube-proxy"]: _kube_proxy_image(names["kube-proxy"], b / "kube-proxy", rootfs),
        # Not kubeadm's: the add-on the local cluster has and the e2e suite needs (`kubectl top`);
        # kind.up applies its manifest (hack/cluster/addons.py).
        METRICS_SERVER_IMAGE: _binary_image(
            METRICS_SERVER_IMAGE, b / "metrics-server", "metrics-server", ["/metrics-server"]
        ),
    }


# ------------------------------------------------------------------ the base and the node


def base_tarball(p: Paths, log: Log) -> Path:
    """debootstrap bookworm with the node's Debian packages, cached by the package list."""
    key = hashlib.sha256(" ".join(BASE_PACKAGES).encode()).hexdigest()[:12]
    tarball = p.cache / "kind-node" / f"base-bookworm-{key}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        root = Path(tmp) / "rootfs"
        procs.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                "bookworm",
                str(root),
            ]
        )
        for junk in JUNK:
            shutil.rmtree(root / junk, ignore_errors=True)
        procs.run(["tar", "--numeric-owner", "-C", str(root), "-cf", f"{tarball}.part", "."])
    os.replace(f"{tarball}.part", tarball)
    log(f"debootstrap base in {time.monotonic() - t0:.0f}s: {tarball}")
    return tarball


def _systemd_for_a_container(root: Path) -> None:
    """Only what a node needs starts: no gettys, timers or udev; journald skips the kernel log."""
    for wants in (
        "etc/systemd/system/getty.target.wants",
        "etc/systemd/system/timers.target.wants",
        "etc/systemd/system/sysinit.target.wants",
        "etc/systemd/system/multi-user.target.wants",
        "lib/systemd/system/multi-user.target.wants",
        "lib/systemd/system/local-fs.target.wants",
        "lib/systemd/system/getty.target.wants",
    ):
        d = root / wants
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
    mask = root / "etc/systemd/system"
    for unit in (
        "getty.target",
        "console-getty.service",
        "systemd-firstboot.service",
        "systemd-remount-fs.service",
        "systemd-modules-load.service",
        "sys-kernel-config.mount",
        "sys-kernel-debug.mount",
        "sys-kernel-tracing.mount",
        "sys-fs-fuse-connections.mount",
        "dev-hugepages.mount",
        "systemd-udevd.service",
        "systemd-pstore.service",
        "e2scrub_reap.service",
    ):
        link = mask / unit
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    (root / "etc/systemd/journald.conf.d").mkdir(parents=True, exist_ok=True)
    shutil.copy2(FILES / "journald.conf", root / "etc/systemd/journald.conf.d/10-kind-node.conf")
    (root / "etc/machine-id").write_text("")


def _enable(root: Path, unit: str, target: str = "multi-user.target") -> None:
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    src = f"/etc/systemd/system/{unit}"
    if not (root / src.lstrip("/")).exists():
        src = f"/lib/systemd/system/{unit}"
    link = wants / unit
    if not link.is_symlink():
        link.symlink_to(src)


def _template(name: str, **values: str) -> str:
    text = (FILES / name).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", v)
    return text


def kube_router_args() -> list[str]:
    """kube-router's flags in the node: the local cluster's (netpol.FIREWALL_ONLY), with the
    node's admin kubeconfig, its host name (systemd's %H: kind names the node after it) and
    kind's Service range."""
    return [
        f"--kubeconfig={KUBE_ROUTER_KUBECONFIG}",
        "--hostname-override=%H",
        f"--service-cluster-ip-range={SERVICE_SUBNET}",
        *netpol.FIREWALL_ONLY,
    ]


def _install_kube_router(p: Paths, root: Path) -> None:
    binary = p.bin / "kube-router"
    if not binary.exists():
        raise RuntimeError(
            f"kube-router {netpol.VERSION} is not built in {p.bin}: run "
            f"`bash hack/build-binaries.sh {p.cache} kube-router` (or `make prereqs`)"
        )
    local_bin = root / "usr/local/bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, local_bin / "kube-router")
    shutil.copy2(FILES / "kube-router-firewall", local_bin / "kube-router-firewall")
    (local_bin / "kube-router-firewall").chmod(0o755)
    unit = root / "etc/systemd/system"
    unit.mkdir(parents=True, exist_ok=True)
    (unit / "kube-router.service").write_text(
        _template("kube-router.service", KUBE_ROUTER_ARGS=" ".join(kube_router_args()))
    )
    shutil.copy2(FILES / "kube-router.path", unit / "kube-router.path")
    _enable(root, "kube-router.path")


def _install_node_files(p: Paths, root: Path, pause_image: str) -> None:
    for b in ("kubeadm", "kubelet", "kubectl"):
        shutil.copy2(p.bin / b, root / "usr/bin" / b)
    (root / "usr/local/sbin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(engine.runtime_binary(p), root / "usr/local/sbin/runc-nosysresource")
    entrypoint = root / "usr/local/bin/entrypoint"
    entrypoint.write_text(
        _template("entrypoint", POD_SUBNET=POD_SUBNET, SERVICE_SUBNET=SERVICE_SUBNET)
    )
    entrypoint.chmod(0o755)
    (root / "etc/containerd/config.toml").write_text(
        _template("containerd.toml", PAUSE_IMAGE=pause_image)
    )
    cni = root / "etc/cni/net.d"
    cni.mkdir(parents=True, exist_ok=True)
    (cni / "10-kind-node.conflist").write_text(_template("cni.conflist", POD_SUBNET=POD_SUBNET))
    unit = root / "etc/systemd/system"
    shutil.copy2(FILES / "kubelet.service", unit / "kubelet.service")
    (unit / "kubelet.service.d").mkdir(exist_ok=True)
    shutil.copy2(FILES / "10-kubeadm.conf", unit / "kubelet.service.d/10-kubeadm.conf")
    _enable(root, "containerd.service")
    _enable(root, "kubelet.service")
    _install_kube_router(p, root)
    kind = root / "kind"
    (kind / "manifests").mkdir(parents=True, exist_ok=True)
    (kind / "version").write_text(f"v{KUBERNETES_VERSION}\n")
    (kind / "manifests/default-cni.yaml").write_text(
        _template("default-cni.yaml", POD_SUBNET=POD_SUBNET)
    )
    shutil.copy2(FILES / "default-storage.yaml", kind / "manifests/default-storage.yaml")
    (kind / "tornado-node").write_text(
        json.dumps(
            {
                "image": node_image(),
                "kubernetes": f"v{KUBERNETES_VERSION}",
                "etcd": VERSIONS["ETCD_VERSION"],
                "coredns": VERSIONS["COREDNS_VERSION"],
                "kube-router": netpol.VERSION,
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )


def _preload(root: Path, archives: dict[str, bytes], log: Log) -> None:
    """Import the images with a throwaway containerd whose root is the image's own."""
    run = engine.RUN / "preload"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    sock = run / "containerd.sock"
    cfg = run / "config.toml"
    cfg.write_text(
        f"""version = 2
root = "{root / "var/lib/containerd"}"
state = "{run / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{run / "opt"}"
"""
    )
    with open(run / "containerd.log", "wb") as out:
        proc = subprocess.Popen(
            ["containerd", "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ctr = ["ctr", "--address", str(sock), "-n", "k8s.io"]
    try:
        deadline = time.monotonic() + 30
        while procs.run([*ctr, "version"], check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the preload containerd did not start: "
                    + (run / "containerd.log").read_text()[-2000:]
                )
            time.sleep(0.2)
        for ref, data in archives.items():
            r = subprocess.run(
                [*ctr, "images", "import", "--snapshotter", "overlayfs", "-"],
                input=data,
                capture_output=True,
                check=False,
            )
            if r.returncode != 0:
                raise RuntimeError(f"importing {ref}: {r.stderr.decode(errors='replace')}")
            log(f"preloaded {ref} ({len(data) / 1e6:.0f} MB)")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(run, ignore_errors=True)


def rootfs_tarball(p: Paths, log: Log = print) -> Path:
    """The node's root filesystem as a tarball, cached by the image's tag."""
    tag = node_image().rsplit(":", 1)[1]
    tarball = p.cache / "kind-node" / f"node-{tag}.tar"
    if tarball.exists():
        return tarball
    base = base_tarball(p, log)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        procs.run(["tar", "--numeric-owner", "-C", str(root), "-xf", str(base)])
        _systemd_for_a_container(root)
        archives = control_plane_archives(p, root)
        pause = _kubeadm_images(p)["pause"]
        _install_node_files(p, root, pause)
        _preload(root, archives, log)
        procs.run(
            [
                "tar",
                "--numeric-owner",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-C",
                str(root),
                "-cf",
                f"{tarball}.part",
                ".",
            ]
        )
    os.replace(f"{tarball}.part", tarball)
    for old in tarball.parent.glob("node-v*.tar"):
        if old != tarball:
            old.unlink()  # an earlier recipe's
    log(f"node rootfs in {time.monotonic() - t0:.0f}s: {tarball}")
    return tarball


# Docker 20.10's `import --change` takes no STOPSIGNAL: `docker stop` of a node ends in SIGKILL
# after its timeout (kind itself removes nodes with `docker rm -f`).
IMAGE_CHANGES = (
    'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
    "ENV container=docker",
)


def has_image(ref: str) -> bool:
    return engine.docker("image", "inspect", ref, check=False).returncode == 0


def ensure(p: Paths | None = None, log: Log = print) -> str:
    """The node image in the project's engine (started if needed), built or taken from the cache."""
    p = p or paths()
    engine.start(p)
    ref = node_image()
    if has_image(ref):
        return ref
    tarball = rootfs_tarball(p, log)
    t0 = time.monotonic()
    args = ["docker", "import"]
    for c in IMAGE_CHANGES:
        args += ["--change", c]
    subprocess.run([*args, str(tarball), ref], env=engine.env(), check=True, capture_output=True)
    log(f"docker import of {ref} in {time.monotonic() - t0:.0f}s")
    tags = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY).stdout
    for old in tags.split():
        if old != ref:
            engine.docker("rmi", old, check=False)  # an earlier recipe's
    return ref


def kind_binary(p: Paths | None = None) -> Path:
    return kind_bin(p) / "kind"
