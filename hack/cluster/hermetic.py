"""The local cluster's hermetic network: nothing a pod sends, and nothing sent to a Service IP,
leaves the machine.

Without these rules a request from a pod (or from the node) to a Service IP on a port that no
Service serves is not translated by kube-proxy, so its destination stays in the service range,
the default route takes it out of the machine, and whatever is out there may answer. The same
goes for a pod calling any address outside the cluster.

One filter chain, `CHAIN`, holds the rules, each with a comment naming it:

- to a pod (`POD_CIDR`) or to the node (`NODE_IP`): in the cluster, returned to the rest of the
  ruleset unchanged;
- to the service range: rejected. The filter table sees a packet after kube-proxy's DNAT (nat
  PREROUTING for pods, nat OUTPUT for the node, and conntrack for every later packet of a
  connection), so a destination still in the service range is one no Service rule translated;
- from a pod (by source address, or by arriving on the pod bridge) to anywhere else: rejected.

TCP is answered with a reset and everything else with ICMP port-unreachable, so a wrong host or
port fails at once, inside the machine, instead of timing out (or reaching something).

The chain is jumped to from FORWARD (everything routed through the host: pod traffic) and from
OUTPUT for destinations in the service range (the node's own requests to Service IPs, seen after
DNAT). Both jumps come before the local cluster's own ACCEPT rules for the pod bridge.

What stays open, because it never leaves the machine: pods to pods, to Service IPs that are
translated, to the node (the API server, the kubelet for metrics-server); the node to pods
(probes, the operator scraping pod metrics). CoreDNS resolves cluster names only (no upstream),
so DNS needs nothing outside either. Pods have no IPv6 addresses and the host forwards no IPv6,
so only IPv4 has rules.

`ensure` puts everything in place in one iptables-restore transaction (no moment with half the
rules) and is idempotent; `remove` takes it away (the local cluster's `down` does, with the other
chains it added); `problems` says what is missing, without sending anything; `counters` reads each
rule's packet counter.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from hack.paths import BRIDGE, NODE_IP, POD_CIDR, SERVICE_CIDR

CHAIN = "TORNADO-HERMETIC"
_TAG = "tornado-hermetic"


@dataclass(frozen=True)
class Rule:
    name: str
    match: tuple[str, ...]
    target: tuple[str, ...]
    why: str

    @property
    def comment(self) -> str:
        return f"{_TAG} {self.name}: {self.why}"

    def spec(self, chain: str) -> list[str]:
        return ["-A", chain, *self.match, "-m", "comment", "--comment", self.comment, *self.target]


_RETURN = ("-j", "RETURN")
_RESET = ("-j", "REJECT", "--reject-with", "tcp-reset")
_UNREACHABLE = ("-j", "REJECT", "--reject-with", "icmp-port-unreachable")

RULES: tuple[Rule, ...] = (
    Rule("to-pod", ("-d", POD_CIDR), _RETURN, "in the cluster"),
    Rule("to-node", ("-d", f"{NODE_IP}/32"), _RETURN, "in the cluster"),
    Rule(
        "service-port-tcp",
        ("-d", SERVICE_CIDR, "-p", "tcp"),
        _RESET,
        "a Service IP and port no Service serves",
    ),
    Rule(
        "service-port",
        ("-d", SERVICE_CIDR),
        _UNREACHABLE,
        "a Service IP and port no Service serves",
    ),
    Rule("pod-out-tcp", ("-s", POD_CIDR, "-p", "tcp"), _RESET, "from a pod to outside the cluster"),
    Rule("pod-out", ("-s", POD_CIDR), _UNREACHABLE, "from a pod to outside the cluster"),
    Rule("bridge-out-tcp", ("-i", BRIDGE, "-p", "tcp"), _RESET, "from the pod bridge to outside"),
    Rule("bridge-out", ("-i", BRIDGE), _UNREACHABLE, "from the pod bridge to outside"),
)
# The rules a request to a Service IP on a port no Service serves meets (TCP first).
SERVICE_PORT_RULES = ("service-port-tcp", "service-port")


def hooks(chain: str = CHAIN) -> list[list[str]]:
    """The jumps into `chain`, as `iptables -S` prints them, without the leading `-A`."""
    return [
        ["FORWARD", "-m", "comment", "--comment", f"{_TAG}: pod traffic", "-j", chain],
        [
            "OUTPUT",
            "-d",
            SERVICE_CIDR,
            "-m",
            "comment",
            "--comment",
            f"{_TAG}: the node to Service IPs",
            "-j",
            chain,
        ],
    ]


def _iptables(
    *args: str, check: bool = False, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["iptables", "-w", "5", *args],
        capture_output=True,
        text=True,
        check=check,
        input=input,
        timeout=60,
    )


def available() -> bool:
    return shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None


def _rules_of(chain: str) -> list[list[str]] | None:
    """`iptables -S chain` as word lists (policy and -N lines dropped); None if it is missing."""
    r = _iptables("-S", chain)
    if r.returncode != 0:
        return None
    return [shlex.split(ln) for ln in r.stdout.splitlines() if ln.startswith("-A ")]


def _normal(words: Sequence[str]) -> list[str]:
    """A rule in the form `iptables -S` prints it (it writes /32 and drops some defaults)."""
    out = []
    for w in words:
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", w):
            w += "/32"
        out.append(w)
    return out


def _restore_line(words: Sequence[str]) -> str:
    """Words as one iptables-restore line (it reads double quotes, not shlex's single ones)."""
    return " ".join(f'"{w}"' if re.search(r"[\s'\"]", w) else w for w in words)


def _chain_ok(chain: str) -> bool:
    return _rules_of(chain) == [_normal(r.spec(chain)) for r in RULES]


def _hook_problems(chain: str, before: Sequence[Sequence[str]]) -> dict[str, str]:
    """Per builtin chain: what is wrong with the jump into `chain` ("" when it is right)."""
    out: dict[str, str] = {}
    for hook in hooks(chain):
        builtin = hook[0]
        rules = [r[1:] for r in (_rules_of(builtin) or [])]
        want = _normal(hook)
        if want not in rules:
            out[builtin] = f"no jump from {builtin} to {chain}"
            continue
        first = rules.index(want)
        ahead = [list(b) for b in before if b[0] == builtin and _normal(b) in rules[:first]]
        if ahead:
            out[builtin] = f"the jump from {builtin} to {chain} comes after {shlex.join(ahead[0])}"
    return out


def problems(chain: str = CHAIN, before: Sequence[Sequence[str]] = ()) -> list[str]:
    """What is missing or out of place, in words; empty when the rules are all in place.

    `before`: rules (as `iptables -S` prints them, without `-A`) the jumps must precede.
    Reads the ruleset only: sends nothing.
    """
    if not available():
        return ["iptables is not installed"]
    found = []
    if _rules_of(chain) is None:
        found.append(f"chain {chain} is missing")
    elif not _chain_ok(chain):
        found.append(f"chain {chain} does not hold the expected rules")
    found += _hook_problems(chain, before).values()
    return found


def ensure(chain: str = CHAIN, before: Sequence[Sequence[str]] = ()) -> bool:
    """Put the chain and its jumps in place (in one transaction); True if anything changed."""
    lines: list[str] = []
    if not _chain_ok(chain):
        # With --noflush, declaring a chain creates it or empties it, in the same transaction.
        lines.append(f":{chain} - [0:0]")
        lines += [_restore_line(r.spec(chain)) for r in RULES]
    for builtin in _hook_problems(chain, before):
        [hook] = [h for h in hooks(chain) if h[0] == builtin]
        existing = [r[1:] for r in (_rules_of(builtin) or [])]
        lines += ["-D " + _restore_line(hook)] * existing.count(_normal(hook))
        lines.append(f"-I {builtin} 1 " + _restore_line(hook[1:]))
    if not lines:
        return False
    text = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
    r = subprocess.run(
        ["iptables-restore", "-w", "5", "--noflush"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(
            f"iptables-restore of the hermetic rules failed: {r.stderr.strip()}\n{text}"
        )
    left = problems(chain, before)
    if left:
        raise RuntimeError(f"hermetic rules not in place after iptables-restore: {left}")
    return True


def remove(chain: str = CHAIN) -> None:
    """Delete the jumps into `chain` and the chain itself; nothing happens if they are gone."""
    for hook in hooks(chain):
        while _iptables("-D", *hook).returncode == 0:
            pass
    _iptables("-F", chain)
    _iptables("-X", chain)


_COUNTER_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s.*/\* (.*) \*/")


def counters(chain: str = CHAIN) -> dict[str, int]:
    """Packets each rule of `chain` has matched, by rule name (`iptables -L chain -v -n -x`)."""
    r = _iptables("-L", chain, "-v", "-n", "-x", check=True)
    by_comment = {rule.comment: rule.name for rule in RULES}
    out: dict[str, int] = {}
    for line in r.stdout.splitlines():
        m = _COUNTER_LINE.match(line)
        if m and m.group(3) in by_comment:
            out[by_comment[m.group(3)]] = int(m.group(1))
    return out
