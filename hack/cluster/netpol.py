"""The local cluster's NetworkPolicy enforcer: kube-router's network policy controller, alone.

The bridge CNI enforces nothing, so without this a NetworkPolicy is only an object. kube-router
(`github.com/cloudnativelabs/kube-router/v2`, built from the Go module proxy by
`hack/build-binaries.sh`, pinned in `versions.env`) runs as one host process, like kwok, with only
its firewall on (`--run-router=false --run-service-proxy=false --enable-cni=false`): it watches
pods, namespaces and NetworkPolicies and turns them into iptables chains (`KUBE-ROUTER-*`,
`KUBE-POD-FW-*`, `KUBE-NWPLCY-*`) and ipsets (`KUBE-SRC-*`, `KUBE-DST-*`) for this node's pods.
A connection a policy does not allow is rejected (ICMP port-unreachable, so the client sees it
refused at once), and traffic from the node itself (kubelet probes, the API server's proxy, an
operator on the host) is always allowed, as NetworkPolicy specifies.

Why kube-router and not kube-network-policies (the enforcer kind ships): kube-network-policies
sends each new connection to user space with nftables' `queue` statement, and this kernel is
built without it (`CONFIG_NFT_QUEUE` is not set, and there are no modules to load): its ruleset
is refused (`netlink receive: no such file or directory`) and nothing is enforced. kube-router
needs iptables' filter table, the `physdev`, `conntrack`, `addrtype`, `mark`, `comment` and `set`
matches and `hash:ip`/`hash:net` ipsets, all of which this kernel has, and the `ipset` tool
(Debian's package, installed by `make prereqs`).

kube-router keeps the jumps into its chains first in INPUT, FORWARD and OUTPUT, and ACCEPTs what a
policy allows at the end of its own chains, so the hermetic network's rules (hack/cluster/
hermetic.py), jumped to from FORWARD after it, would never see a policed pod's traffic. So the
same jumps into the hermetic chain are put first inside kube-router's FORWARD and OUTPUT chains too
(`HERMETIC_HOOKS`): kube-router rewrites its chains by iptables-save and -restore and keeps rules
it did not write, in place.

`start` runs it and waits for its first sync (its chains with the final ACCEPT rule); `stop`
ends it and removes its chains, the jumps into them and its ipsets (kube-router leaves them when it
exits, and rules without their controller would go on enforcing policies as they last were).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

from hack import procs
from hack.cluster import hermetic
from hack.paths import NODE_NAME, SERVICE_CIDR, VERSIONS, Paths

NAME = "kube-router"  # the component's pid file and log under the cluster's run and logs dirs
VERSION = VERSIONS.get("KUBE_ROUTER_VERSION", "")
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"
OUTPUT_CHAIN = "KUBE-ROUTER-OUTPUT"
CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-")
_TAG = "tornado-hermetic before kube-router"


class EnforcerError(RuntimeError):
    """kube-router is missing or did not come up; the message says what to do."""


# The firewall alone, IPv4 only, no listener at all (readiness is read from its chains: `synced`).
# The kind node image's kube-router unit runs with the same flags (hack/kind_node/image.py).
FIREWALL_ONLY = (
    "--run-firewall=true",
    "--run-router=false",
    "--run-service-proxy=false",
    "--enable-cni=false",
    "--enable-ipv4=true",
    "--enable-ipv6=false",
    "--health-port=0",
    "--metrics-port=0",
    "--iptables-sync-period=1m",
    "--v=1",
)


def argv(p: Paths) -> list[str]:
    return [
        str(p.bin / "kube-router"),
        f"--kubeconfig={p.kubeconfig}",
        f"--hostname-override={NODE_NAME}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        *FIREWALL_ONLY,
    ]


def pid(p: Paths) -> int | None:
    return procs.pid_of(p, NAME)


def _rules(chain: str) -> list[list[str]] | None:
    r = subprocess.run(
        ["iptables", "-w", "5", "-S", chain], capture_output=True, text=True, timeout=60
    )
    if r.returncode != 0:
        return None
    return [shlex.split(line)[2:] for line in r.stdout.splitlines() if line.startswith("-A ")]


def synced_rules(forward: list[list[str]]) -> bool:
    """Whether these rules of kube-router's FORWARD chain (`iptables -S` words, without `-A
    CHAIN`) show its first sync done: they end in the ACCEPT of what complies with the policies."""
    return bool(forward) and "0x20000/0x20000" in forward[-1] and forward[-1][-1] == "ACCEPT"


def synced() -> bool:
    """Whether kube-router's first sync is done (on this host)."""
    return synced_rules(_rules(FORWARD_CHAIN) or [])


HERMETIC_HOOKS: tuple[tuple[str, ...], ...] = (
    (FORWARD_CHAIN, "-m", "comment", "--comment", f"{_TAG}: pod traffic", "-j", hermetic.CHAIN),
    (
        OUTPUT_CHAIN,
        "-d",
        SERVICE_CIDR,
        "-m",
        "comment",
        "--comment",
        f"{_TAG}: the node to Service IPs",
        "-j",
        hermetic.CHAIN,
    ),
)


def hermetic_first() -> bool:
    """Whether the hermetic chain is jumped to first in kube-router's chains (or has no chain)."""
    if _rules(hermetic.CHAIN) is None:
        return True
    for hook in HERMETIC_HOOKS:
        rules = _rules(hook[0])
        if rules is None or not rules or rules[0] != list(hook[1:]):
            return False
    return True


def ensure_hermetic_first() -> None:
    """Put the jumps into the hermetic chain first in kube-router's chains (idempotent)."""
    if _rules(hermetic.CHAIN) is None:
        return
    for hook in HERMETIC_HOOKS:
        chain, spec = hook[0], list(hook[1:])
        rules = _rules(chain) or []
        if rules and rules[0] == spec:
            continue
        for _ in range(rules.count(spec)):
            procs.run(["iptables", "-w", "5", "-D", chain, *spec], check=False)
        procs.run(["iptables", "-w", "5", "-I", chain, "1", *spec])


def start(p: Paths, timeout: float = 60) -> None:
    """Start kube-router (when it is not running), wait for its first sync, and put the
    hermetic rules ahead of it."""
    binary = p.bin / "kube-router"
    if not binary.exists():
        raise EnforcerError(
            f"kube-router {VERSION} is not built in {p.bin}: run "
            f"`bash hack/build-binaries.sh {p.cache} kube-router` (or `make prereqs`)."
        )
    if not shutil.which("ipset"):
        raise EnforcerError("`ipset` is not installed (kube-router needs it): run `make prereqs`.")
    procs.start(p, NAME, argv(p))
    procs.wait_until(p, NAME, synced, timeout, "its first iptables sync")
    ensure_hermetic_first()


def ensure(p: Paths) -> bool:
    """Start kube-router if it is not running (and keep the hermetic rules ahead of it);
    whether it was started."""
    if pid(p) is not None:
        ensure_hermetic_first()
        return False
    start(p)
    return True


def stop(p: Paths) -> bool:
    """Stop kube-router and take away what it enforced (its chains, the jumps into them, its
    ipsets), leaving kube-proxy's and the hermetic rules alone; whether it was running."""
    was = procs.stop(p, NAME, grace=10)
    cleanup()
    return was


def _save() -> str:
    return procs.run(["iptables-save", "-t", "filter"], check=False).stdout


def cleanup() -> None:
    """Delete kube-router's chains and the jumps into them, then its ipsets (which rules no
    longer use then). Idempotent; nothing happens when there is nothing of it."""
    if not shutil.which("iptables-save"):
        return
    dump = _save()
    chains = {ln[1:].split()[0] for ln in dump.splitlines() if ln.startswith(":")}
    ours = {c for c in chains if c.startswith(CHAIN_PREFIXES)}
    for line in dump.splitlines():
        words = line.split()
        if line.startswith("-A ") and words[1] not in ours and any(f"-j {c}" in line for c in ours):
            procs.run(["iptables", "-w", "5", "-D", *shlex.split(line[3:])], check=False)
    for flag in ("-F", "-X"):
        for chain in sorted(ours):
            procs.run(["iptables", "-w", "5", flag, chain], check=False)
    if shutil.which("ipset"):
        for name in procs.run(["ipset", "list", "-n"], check=False).stdout.split():
            if name.startswith(IPSET_PREFIXES):
                procs.run(["ipset", "destroy", name], check=False)
