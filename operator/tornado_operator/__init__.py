"""tornado-operator: each TornadoService becomes a Deployment, Service, HPA and PDB."""

from __future__ import annotations

# The one place the version is written: packaging (pyproject.toml), the default image tag and
# the tests that check the chart, the template and the docs against it all read it from here.
__version__ = "0.1.0"

GROUP = "tornado-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TornadoService"
PLURAL = "tornadoservices"
FIELD_MANAGER = "tornado-operator"
# The bundled service template, released with the operator.
DEFAULT_IMAGE = f"tornado-operator/service-template:{__version__}"
