"""Keep the parts of the Kubernetes clients the operator never uses out of its process.

kopf imports whichever Kubernetes clients are installed, each with every model and API class
it generates, only to recognise their objects should a handler return one; the operator never
does. It uses kubernetes_asyncio for its configuration loading (kubeconfig, exec plugins,
in-cluster) and its transport, both of which work on plain JSON without any model. Importing
the client's package, though, imports about 700 model and 60 API modules (32 MiB resident);
the synchronous `kubernetes` client is installed for kubectl-tornado and costs 15 MiB more.

`apply()` must run before kopf or kubeapi is imported (`tornado-operator run` does it first).
It registers kubernetes_asyncio and its `client` package without running their `__init__`,
loads the four client modules kubeapi uses, gives the package the names the configuration
loaders import from it, and leaves `client.models` empty: a model lookup fails with
ImportError (kopf then treats the library as absent), never with something half-loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

PACKAGE = "kubernetes_asyncio"
CLIENT = f"{PACKAGE}.client"
# What kubeapi and kubernetes_asyncio.config use of the client package.
CLIENT_MODULES = ("configuration", "exceptions", "rest", "api_client")
CLIENT_NAMES = {
    "Configuration": "configuration",
    "ApiClient": "api_client",
    "ApiException": "exceptions",
}


def _package(name: str) -> types.ModuleType:
    """The package `name`, registered without running its `__init__`."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an installed package", name=name)
    module = types.ModuleType(name)
    module.__spec__ = spec
    module.__path__ = list(spec.submodule_search_locations)
    module.__file__ = spec.origin
    sys.modules[name] = module
    return module


def apply() -> bool:
    """Whether the lean imports are in place (False: something imported the client first,
    which then stays as it is)."""
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    if PACKAGE in sys.modules:
        return isinstance(getattr(sys.modules.get(CLIENT), "models", None), _EmptyModels)
    root = _package(PACKAGE)
    client = _package(CLIENT)
    root.client = client  # type: ignore[attr-defined]
    models = _EmptyModels(f"{CLIENT}.models")
    models.__path__ = []
    sys.modules[models.__name__] = models
    client.models = models  # type: ignore[attr-defined]
    for name in CLIENT_MODULES:
        setattr(client, name, importlib.import_module(f"{CLIENT}.{name}"))
    for attr, module in CLIENT_NAMES.items():
        setattr(client, attr, getattr(getattr(client, module), attr))
    return True


class _EmptyModels(types.ModuleType):
    """`kubernetes_asyncio.client.models` without a model: nothing here is ever deserialized."""
