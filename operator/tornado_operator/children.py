"""The child kinds: one table, from which everything else about them is derived.

Each row says where the kind lives in the API, whether a TornadoService may go without it, and
which function renders it. The rows are in apply order. The watches (handlers), API paths
(kubeapi, from the row's group, version and plural), apply and delete (reconcile), the
managed-objects metric and the `Children` container all come from `CHILD_KINDS`: a new child kind
is one row here plus its render function in rendering.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tornado_operator import drift, rendering
from tornado_operator.rendering import Parent
from tornado_operator.resources import Resource

JSONDict = dict[str, Any]
# (parent, validated spec, default image) -> the child's metadata and spec, None when unwanted.
Renderer = Callable[[Parent, JSONDict, str], JSONDict | None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChildKind(Resource):
    optional: bool  # may be absent; its renderer returns None when the spec does not want it
    render: Renderer

    def manifest(self, parent: Parent, spec: JSONDict, default_image: str) -> JSONDict | None:
        """The complete manifest: the rendered body under this kind's apiVersion and kind."""
        body = self.render(parent, spec, default_image)
        if body is None:
            if not self.optional:
                raise ValueError(f"{self.kind} is not optional, but its renderer gave nothing")
            return None
        # The hash lets the operator skip the apply when the live child already matches.
        return drift.with_hash({"apiVersion": self.api_version, "kind": self.kind, **body})


CHILD_KINDS: tuple[ChildKind, ...] = (
    ChildKind(
        "apps", "v1", "deployments", "Deployment",
        optional=False, render=rendering.render_deployment,
    ),
    ChildKind(
        "", "v1", "services", "Service",
        optional=True, render=rendering.render_service,  # none for a consumer
    ),
    ChildKind(
        "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy",
        optional=True, render=rendering.render_network_policy,
    ),
    ChildKind(
        "autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
        optional=True, render=rendering.render_hpa,
    ),
    ChildKind(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget",
        optional=True, render=rendering.render_pdb,
    ),
)  # fmt: skip

BY_KIND: Mapping[str, ChildKind] = {child.kind: child for child in CHILD_KINDS}
# The one child the status is read from.
DEPLOYMENT = BY_KIND["Deployment"]


class Children(Mapping[str, JSONDict | None]):
    """The desired children by kind, in apply order; None for a kind that must not exist."""

    def __init__(self, manifests: Mapping[str, JSONDict | None]) -> None:
        self._manifests = {child.kind: manifests[child.kind] for child in CHILD_KINDS}

    def __getitem__(self, kind: str) -> JSONDict | None:
        return self._manifests[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._manifests)

    def __len__(self) -> int:
        return len(self._manifests)

    def __repr__(self) -> str:
        return f"Children({self._manifests!r})"

    @property
    def deployment(self) -> JSONDict:
        manifest = self._manifests[DEPLOYMENT.kind]
        assert manifest is not None  # not optional: ChildKind.manifest saw to it
        return manifest

    def all(self) -> list[JSONDict]:
        """The manifests that must exist, in apply order."""
        return [m for m in self._manifests.values() if m is not None]


def render_children(parent: Parent, spec: JSONDict, default_image: str) -> Children:
    """All desired children for a validated, defaulted spec."""
    return Children(
        {child.kind: child.manifest(parent, spec, default_image) for child in CHILD_KINDS}
    )
