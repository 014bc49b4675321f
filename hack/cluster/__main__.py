"""`python -m hack.cluster`: one tool for a real cluster, kind where it works, local otherwise.

`python -m hack.cluster up [--fake-nodes N]|down|status|restart-control-plane|kubeconfig|load
IMAGE...|build-images [template] [operator] [consumer] [broker]`
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from hack import procs
from hack.cluster import fakenodes, hermetic, kind, local, netpol, providers
from hack.paths import paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hack.cluster", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    upp = sub.add_parser(
        "up", help="start a cluster (or say it is up) and print its kubeconfig path"
    )
    upp.add_argument("--provider", choices=["auto", "kind", "local"], default="auto")
    upp.add_argument(
        "--fake-nodes",
        type=int,
        default=0,
        metavar="N",
        help="also run kwok and make sure N fake nodes exist (local cluster only; "
        "pods need the toleration and nodeSelector of hack/cluster/fakenodes.py)",
    )
    dn = sub.add_parser(
        "down", help="stop the local cluster and remove everything it added to the host"
    )
    dn.add_argument(
        "--provider",
        choices=["all", "kind", "local"],
        default="all",
        help="kind: delete the kind cluster (and stop the project's Docker engine) only",
    )
    sub.add_parser("status", help="exit 0 when the local cluster is up; list its components")
    sub.add_parser(
        "restart-control-plane",
        help="stop and start etcd and kube-apiserver of the local cluster, keeping its data "
        "(a chaos step: everyone's API calls fail meanwhile)",
    )
    sub.add_parser("kubeconfig", help="print the kubeconfig path of the cluster in use")
    ld = sub.add_parser("load", help="put Docker images into the cluster's node (like kind load)")
    ld.add_argument("images", nargs="+")
    bi = sub.add_parser(
        "build-images", help="build the project's images and load them into the cluster"
    )
    bi.add_argument(
        "which",
        nargs="*",
        choices=["template", "operator", "consumer", "broker"],
        default=["template", "operator"],
    )
    bi.add_argument("--no-load", action="store_true")
    args = ap.parse_args(argv)
    p = paths()
    try:
        if args.cmd == "up":
            in_use = providers.ensure_cluster(args.provider)
            if args.fake_nodes:
                if in_use != p.kubeconfig:
                    raise RuntimeError(
                        f"--fake-nodes needs the project's local cluster; the cluster in use is "
                        f"{in_use} (use --provider local)"
                    )
                fakenodes.ensure(p, args.fake_nodes)
            print(in_use)
        elif args.cmd == "down":
            if args.provider != "local" and (kind.running() or kind.engine_running()):
                kind.down()
            if args.provider != "kind":
                local.down(p)
        elif args.cmd == "status":
            comps = local.running_components(p)
            for name, pid in comps.items():
                print(f"{name:26} {'running, pid ' + str(pid) if pid else 'stopped'}")
            kwok = fakenodes.pid(p)
            kwok_state = f"running, pid {kwok}" if kwok else "off (optional: up --fake-nodes N)"
            print(f"{fakenodes.NAME:26} {kwok_state}")
            enforcer = netpol.pid(p)
            enforcer_state = f"running, pid {enforcer}" if enforcer else "stopped"
            print(f"{netpol.NAME + ' (NetworkPolicy)':26} {enforcer_state}")
            up = local.is_up(p)
            if up:
                gaps = hermetic.problems(before=local.FORWARD_RULES)
                if enforcer and not netpol.hermetic_first():
                    gaps.append(f"the hermetic jumps are not first in {netpol.FORWARD_CHAIN}")
                state = "rules in place" if not gaps else "MISSING: " + "; ".join(gaps)
                print(f"{'hermetic network':26} {state}")
            if up and kwok:
                nodes = fakenodes.fake_nodes(p)
                print(f"fake nodes: {len(nodes)} ({sum(nodes.values())} Ready)")
            print(f"local cluster: {'up' if up else 'down'}")
            return 0 if up else 1
        elif args.cmd == "restart-control-plane":
            local.restart_control_plane(p)
        elif args.cmd == "kubeconfig":
            kc = providers.kubeconfig_in_use()
            if kc is None:
                print("no cluster is up: run `python -m hack.cluster up`", file=sys.stderr)
                return 1
            print(kc)
        elif args.cmd == "load":
            providers.load_images(args.images)
        elif args.cmd == "build-images":
            refs = providers.build_images(args.which)
            if not args.no_load:
                providers.load_images(refs)
    except (local.PrerequisiteError, fakenodes.FakeNodesError, netpol.EnforcerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (procs.StartError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
