"""Drift: children deleted or edited by hand come back; fields others own stay theirs."""

from __future__ import annotations

import time

from tests.e2e.operator_support import (
    TEMPLATE_IMAGE,
    apply,
    get,
    kubectl,
    patch,
    tornadoservice,
    wait_event,
    wait_for,
    wait_ready,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]

RESTORE_WITHIN = 30  # seconds; typically well under 5


def test_deleted_children_are_restored(operator_ns: str) -> None:
    ns = operator_ns
    apply(tornadoservice("phoenix", replicas=2), ns)
    wait_ready("phoenix", ns)
    for kind in ("deployment", "service", "poddisruptionbudget"):
        old = get(kind, "phoenix", ns)
        assert old is not None
        kubectl("delete", kind, "phoenix", "-n", ns, "--wait=false")
        started = time.monotonic()
        new = wait_for(
            f"{kind} recreated",
            lambda k=kind, uid=old["metadata"]["uid"]: (
                (o := get(k, "phoenix", ns)) and o["metadata"]["uid"] != uid and o
            ),
            RESTORE_WITHIN,
            interval=0.5,
        )
        print(f"{kind} restored in {time.monotonic() - started:.1f}s")
        assert new["metadata"]["ownerReferences"][0]["kind"] == "TornadoService"
    wait_event("phoenix", ns, "DriftCorrected", "Normal")
    wait_ready("phoenix", ns)


def test_hand_edits_are_reverted_but_others_fields_stay(operator_ns: str) -> None:
    ns = operator_ns
    apply(tornadoservice("steady", replicas=1), ns)
    wait_ready("steady", ns)

    # A hand edit of a field the operator sets is reverted...
    kubectl("set", "image", "deployment/steady", "app=example/not-ours:1", "-n", ns)
    wait_for(
        "image reverted",
        lambda: (
            (get("deployment", "steady", ns) or {})["spec"]["template"]["spec"]["containers"][0][
                "image"
            ]
            == TEMPLATE_IMAGE
        ),
        RESTORE_WITHIN,
        interval=0.5,
    )
    patch("service", "steady", ns, {"spec": {"selector": {"app.kubernetes.io/name": "hijacked"}}})
    wait_for(
        "service selector reverted",
        lambda: (
            (get("service", "steady", ns) or {})["spec"]["selector"].get("app.kubernetes.io/name")
            == "steady"
        ),
        RESTORE_WITHIN,
        interval=0.5,
    )
    kubectl("scale", "deployment/steady", "-n", ns, "--replicas=3")
    wait_for(
        "deployment replicas reverted",
        lambda: (get("deployment", "steady", ns) or {})["spec"]["replicas"] == 1,
        RESTORE_WITHIN,
        interval=0.5,
    )

    # ...while what others add, and the operator never sets, is left alone.
    kubectl("annotate", "deployment/steady", "-n", ns, "example.com/owner=team-a")
    kubectl("label", "service/steady", "-n", ns, "example.com/tier=frontend")
    time.sleep(5)
    patch(
        "tornadoservice", "steady", ns, {"spec": {"podAnnotations": {"touch": "1"}}}
    )  # force a reconcile
    wait_for(
        "pod annotation applied",
        lambda: (
            (get("deployment", "steady", ns) or {})["spec"]["template"]["metadata"]
            .get("annotations", {})
            .get("touch")
            == "1"
        ),
        60,
    )
    dep = get("deployment", "steady", ns)
    svc = get("service", "steady", ns)
    assert dep is not None and dep["metadata"]["annotations"]["example.com/owner"] == "team-a"
    assert svc is not None and svc["metadata"]["labels"]["example.com/tier"] == "frontend"
    wait_ready("steady", ns)
