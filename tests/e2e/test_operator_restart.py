"""The operator restarts in the middle of a batch of changes; everything converges, with no
duplicate and no orphaned children."""

from __future__ import annotations

import json
import time

from tests.e2e.operator_support import (
    TEMPLATE_IMAGE_ALIAS,
    apply,
    get,
    kubectl,
    owned_children,
    patch,
    running_operator,
    tornadoservice,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]


def _converged(ns: str, expected: dict[str, dict[str, object]]) -> bool:
    children = owned_children(ns)
    services = json.loads(kubectl("get", "tsvc", "-n", ns, "-o", "json").stdout)["items"]
    uids = {s["metadata"]["name"]: s["metadata"]["uid"] for s in services}
    if set(uids) != set(expected):
        return False
    for kind in ("deployment", "service"):
        names = sorted(c["metadata"]["name"] for c in children[kind])
        if names != sorted(expected):  # one per TornadoService: no duplicates, no orphans
            return False
        for child in children[kind]:
            [ref] = child["metadata"]["ownerReferences"]
            if ref["uid"] != uids[child["metadata"]["name"]]:
                return False
    for dep in children["deployment"]:
        want = expected[dep["metadata"]["name"]]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        if dep["spec"]["replicas"] != want["replicas"] or container["image"] != want["image"]:
            return False
    return True


def test_restart_in_the_middle_of_a_batch(
    namespace: str, operator_crds: None, template_image: str
) -> None:
    ns = namespace
    names = [f"batch-{i}" for i in range(6)]
    with running_operator(ns):
        for name in names[:4]:
            apply(tornadoservice(name, replicas=1), ns)
        wait_for("first Deployments", lambda: len(owned_children(ns)["deployment"]) >= 2, 60, 0.2)
        # The operator stops while it is still working through the batch.

    # Changes while it is down: an edit, a scale-to-zero, a delete, new objects.
    patch("tornadoservice", "batch-0", ns, {"spec": {"image": TEMPLATE_IMAGE_ALIAS}})
    patch("tornadoservice", "batch-1", ns, {"spec": {"replicas": 0}})
    kubectl("delete", "tsvc", "batch-2", "-n", ns)
    for name in names[4:]:
        apply(tornadoservice(name, replicas=1), ns)

    with running_operator(ns):
        patch("tornadoservice", "batch-3", ns, {"spec": {"replicas": 2}})
        time.sleep(1)

    with running_operator(ns):
        expected: dict[str, dict[str, object]] = {
            "batch-0": {"replicas": 1, "image": TEMPLATE_IMAGE_ALIAS},
            "batch-1": {"replicas": 0, "image": "tornado-operator/service-template:0.1.0"},
            "batch-3": {"replicas": 2, "image": "tornado-operator/service-template:0.1.0"},
            "batch-4": {"replicas": 1, "image": "tornado-operator/service-template:0.1.0"},
            "batch-5": {"replicas": 1, "image": "tornado-operator/service-template:0.1.0"},
        }
        wait_for("children converge", lambda: _converged(ns, expected), 180, 2)
        for name in expected:
            obj = wait_ready(name, ns)
            assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert get("deployment", "batch-2", ns) is None
