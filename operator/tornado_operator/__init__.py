"""tornado-operator: each TornadoService becomes a Deployment, Service, HPA and PDB."""

from __future__ import annotations

__version__ = "0.1.0"

GROUP = "tornado-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TornadoService"
PLURAL = "tornadoservices"
FIELD_MANAGER = "tornado-operator"
DEFAULT_IMAGE = "tornado-operator/service-template:0.1.0"
