"""`python -m tests.cluster`: one tool for a real cluster, kind where it works, local otherwise."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.cluster import images, local, procs
from tests.cluster.config import REPO, paths
from tests.cluster.kube import binary

KIND_CLUSTER = "tornado-operator"


def _answers(kubeconfig: str) -> bool:
    try:
        r = subprocess.run(
            [
                binary("kubectl"),
                "--kubeconfig",
                kubeconfig,
                "--request-timeout=5s",
                "get",
                "--raw",
                "/readyz",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def kind_node_image() -> str:
    for line in (REPO / "kind-config.yaml").read_text().splitlines():
        line = line.strip()
        if line.startswith("image:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise RuntimeError("kind-config.yaml names no node image")


def kind_usable() -> bool:
    """kind is present and Docker has, or can pull, the pinned node image."""
    if not shutil.which("kind") or not shutil.which("docker"):
        return False
    image = kind_node_image()
    run = procs.run
    if run(["docker", "image", "inspect", image], check=False).returncode == 0:
        return True
    return run(["docker", "pull", image], check=False, timeout=600).returncode == 0


def _kind_kubeconfig() -> Path:
    return paths().cache / "kind.kubeconfig"


def kind_running() -> bool:
    if not shutil.which("kind"):
        return False
    return KIND_CLUSTER in procs.run(["kind", "get", "clusters"], check=False).stdout.split()


def kind_up() -> Path:
    kc = _kind_kubeconfig()
    kc.parent.mkdir(parents=True, exist_ok=True)
    if not kind_running():
        subprocess.run(
            [
                "kind",
                "create",
                "cluster",
                "--name",
                KIND_CLUSTER,
                "--config",
                str(REPO / "kind-config.yaml"),
                "--kubeconfig",
                str(kc),
                "--wait",
                "120s",
            ],
            check=True,
        )
    else:
        kc.write_text(procs.run(["kind", "get", "kubeconfig", "--name", KIND_CLUSTER]).stdout)
    return kc


def ensure_cluster(provider: str = "auto") -> Path:
    """A kubeconfig for a cluster that answers: $KUBECONFIG's, else kind, else the local one."""
    env = os.environ.get("KUBECONFIG")
    if provider == "auto" and env and Path(env).exists() and _answers(env):
        return Path(env)
    p = paths()
    if provider == "kind" or (provider == "auto" and not local.is_up(p) and kind_running()):
        return kind_up()
    if provider == "auto" and not local.is_up(p) and kind_usable():
        return kind_up()
    local.up(p)
    return p.kubeconfig


def load_images(refs: list[str]) -> None:
    """Load into the cluster in use: $KUBECONFIG's when set, else the local one, else kind."""
    p = paths()
    env = os.environ.get("KUBECONFIG")
    use_local = local.is_up(p) and (not env or Path(env) == p.kubeconfig)
    for ref in refs:
        if use_local:
            images.load(ref, p)
        elif kind_running():
            subprocess.run(
                ["kind", "load", "docker-image", ref, "--name", KIND_CLUSTER], check=True
            )
        else:
            raise RuntimeError(
                f"cannot load {ref}: neither the local cluster nor the kind cluster "
                f"{KIND_CLUSTER!r} is in use; load it into your cluster's node yourself"
            )
        print(f"loaded {ref}")


def build_images(which: list[str]) -> list[str]:
    builders = {"template": images.build_template_image, "operator": images.build_operator_image}
    return [builders[w]() for w in which]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    upp = sub.add_parser(
        "up", help="start a cluster (or say it is up) and print its kubeconfig path"
    )
    upp.add_argument("--provider", choices=["auto", "kind", "local"], default="auto")
    sub.add_parser("down", help="stop the local cluster and remove everything it added to the host")
    sub.add_parser("status", help="exit 0 when the local cluster is up; list its components")
    sub.add_parser("kubeconfig", help="print the kubeconfig path of the cluster in use")
    ld = sub.add_parser("load", help="put Docker images into the cluster's node (like kind load)")
    ld.add_argument("images", nargs="+")
    bi = sub.add_parser(
        "build-images", help="build the project's images and load them into the cluster"
    )
    bi.add_argument(
        "which", nargs="*", choices=["template", "operator"], default=["template", "operator"]
    )
    bi.add_argument("--no-load", action="store_true")
    sub.add_parser(
        "demo", help="the README's demo: cluster, images, operator, a sample service answering"
    )
    sub.add_parser("demo-down", help="remove the demo's service and operator release")
    args = ap.parse_args(argv)
    p = paths()
    try:
        if args.cmd == "up":
            kc = ensure_cluster("local" if args.provider == "local" else args.provider)
            print(kc)
        elif args.cmd == "down":
            if kind_running():
                subprocess.run(["kind", "delete", "cluster", "--name", KIND_CLUSTER], check=False)
            local.down(p)
        elif args.cmd == "status":
            comps = local.running_components(p)
            for name, pid in comps.items():
                print(f"{name:26} {'running, pid ' + str(pid) if pid else 'stopped'}")
            up = local.is_up(p)
            print(f"local cluster: {'up' if up else 'down'}")
            return 0 if up else 1
        elif args.cmd == "kubeconfig":
            if local.is_up(p):
                print(p.kubeconfig)
            elif kind_running():
                print(kind_up())
            else:
                print("no cluster is up: run `python -m tests.cluster up`", file=sys.stderr)
                return 1
        elif args.cmd == "load":
            load_images(args.images)
        elif args.cmd == "build-images":
            refs = build_images(args.which)
            if not args.no_load:
                load_images(refs)
        elif args.cmd == "demo":
            from tests.cluster import demo

            return demo.main()
        elif args.cmd == "demo-down":
            from tests.cluster import demo

            return demo.down()
    except local.PrerequisiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (procs.StartError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
