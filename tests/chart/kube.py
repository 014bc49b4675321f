"""Cluster-side helpers only the chart's e2e tests use: owned children, can-i, helm test.

What the demo and the benchmarks share with them (install, wait, port-forward, the e2e lock and
the pause of other operators) is in hack.kubetools.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from hack.kubetools import helm, kubectl, kubectl_json

TSVC = "tornadoservices.tornado-operator.dev"


def owned(namespace: str, uid: str, kinds: str = "deployments,services,hpa,pdb") -> list[Any]:
    """Objects in `namespace` whose owner references name `uid`."""
    items = kubectl_json("-n", namespace, "get", kinds)["items"]
    return [
        o
        for o in items
        if any(ref["uid"] == uid for ref in o["metadata"].get("ownerReferences", []))
    ]


_CAN_I = re.compile(r"^(\S*)\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s*$")


def can_i_list(user: str, namespace: str) -> set[str]:
    """`kubectl auth can-i --list` as "resource verb" / "url verb" strings, one per verb."""
    out = kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    rights: set[str] = set()
    for line in out.splitlines()[1:]:
        if not line.strip():
            continue
        m = _CAN_I.match(line)
        if not m:
            raise ValueError(f"unexpected `kubectl auth can-i --list` line: {line!r}")
        resource, urls, names, verbs = m.groups()
        if names != "[]":
            resource = f"{resource}{names}"
        targets = [resource] if resource else urls.strip("[]").split()
        for target in targets:
            for verb in verbs.strip("[]").split():
                rights.add(f"{target} {verb}")
    return rights


def helm_test(release: str, namespace: str, fullname: str) -> str:
    """Run `helm test`; on failure, fail with helm's output and the test pod's log."""
    r = helm("test", release, "-n", namespace, "--timeout", "6m", check=False, timeout=420)
    if r.returncode != 0:
        logs = kubectl("-n", namespace, "logs", f"{fullname}-test", check=False)
        pytest.fail(f"helm test failed:\n{r.stdout}\n{r.stderr}\npod log:\n{logs.stdout}")
    assert "Phase:          Succeeded" in r.stdout, r.stdout
    return r.stdout
