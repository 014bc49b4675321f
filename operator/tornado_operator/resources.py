"""Where a kind lives in the Kubernetes API: group, version, plural, kind.

Every API path, watch and label selector the operator uses is derived from one of these. The
child kinds (with their render functions) are in `children.CHILD_KINDS`; the kinds that are not
children are here.
"""

from __future__ import annotations

import dataclasses

from tornado_operator import GROUP, KIND, PLURAL, VERSION


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


TORNADO_SERVICE = Resource(GROUP, VERSION, PLURAL, KIND)
POD = Resource("", "v1", "pods", "Pod")
EVENT = Resource("", "v1", "events", "Event")
# kopf's peering objects: one per watched namespace, or one for the whole cluster.
PEERING = Resource("kopf.dev", "v1", "kopfpeerings", "KopfPeering")
CLUSTER_PEERING = Resource(
    "kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False
)
