"""The operator writes only what must change: a restart over converged services writes nothing,
and deleting a namespace full of services re-creates nothing and counts no temporary failure.

Both read the operator's own metrics (it runs in this process, so its Prometheus registry is
this process's), never Events: a write or a retry shows in the counters whether or not it
changed a condition.
"""

from __future__ import annotations

import json

from tests.e2e.operator_support import (
    CHILD_KIND_NAMES,
    WRITE_VERBS,
    api_requests,
    kubectl,
    reconciles,
    running_operator,
    tornadoservice,
    wait_for,
)

pytest_plugins = ["tests.e2e.operator_fixtures"]


def ready_count(ns: str) -> int:
    items = json.loads(kubectl("get", "tsvc", "-n", ns, "-o", "json").stdout)["items"]
    return sum(
        1
        for obj in items
        if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (obj.get("status") or {}).get("conditions") or []
        )
    )


def create_services(ns: str, count: int) -> None:
    # replicas 0: the control-plane work of a service without pods on the 2-core node.
    docs = [tornadoservice(f"svc-{i:03d}", replicas=0) for i in range(count)]
    kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )


def test_restart_over_converged_services_writes_nothing(
    namespace: str, operator_crds: None, template_image: str
) -> None:
    ns, count = namespace, 10
    with running_operator(ns):
        create_services(ns, count)
        wait_for("all converged", lambda: ready_count(ns) == count, 120, 1)
        # Wait until the operator has nothing left to do: no reconcile for a few seconds.
        settled = [reconciles()]

        def quiet() -> bool:
            now = reconciles()
            still = now == settled[-1]
            settled.append(now)
            return still

        wait_for("the operator to settle", quiet, 60, 3)

    writes_before = api_requests(verbs=WRITE_VERBS, ok=False)
    reconciles_before = reconciles()
    with running_operator(ns):
        # Every TornadoService is looked at again on resume...
        wait_for(
            "a reconcile of every service on resume",
            lambda: reconciles() - reconciles_before >= count,
            60,
            0.5,
        )
        settled = [reconciles()]
        wait_for("the operator to settle", quiet, 60, 3)
    # ...and nothing is written: the live children and status already say what it would write.
    made = api_requests(verbs=WRITE_VERBS, ok=False) - writes_before
    assert not made, f"writes on resume: {dict(made)}"
    assert ready_count(ns) == count


def test_deleting_a_namespace_of_services_is_quiet(
    namespace: str, operator_crds: None, template_image: str
) -> None:
    ns, count = namespace, 50
    with running_operator(ns):
        create_services(ns, count)
        wait_for("all converged", lambda: ready_count(ns) == count, 180, 2)
        written = api_requests(verbs=WRITE_VERBS, kinds=CHILD_KIND_NAMES, ok=True)
        temporary = reconciles("temporary")
        kubectl("delete", "namespace", ns, "--wait=false")

        def gone() -> bool:
            proc = kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name", check=False)
            return proc.returncode == 0 and not proc.stdout.strip()

        wait_for(f"namespace {ns} to be gone", gone, 240, 2)
        recreated = api_requests(verbs=WRITE_VERBS, kinds=CHILD_KIND_NAMES, ok=True) - written
        retried = reconciles("temporary") - temporary
    assert not recreated, f"child writes that succeeded after the deletion began: {recreated}"
    assert retried == 0, f"{retried} temporary failures while the namespace was deleted"
