"""kind on machines without a registry, or whose capability bounding set is short.

- `runc-nosysresource/`: a runc wrapper that drops the capabilities the machine cannot grant.
- `engine.py`: the project's own dockerd, with that wrapper as its default runtime.
- `image.py`: a kind node image assembled offline from Debian packages and the project's builds.
"""

from __future__ import annotations

from pathlib import Path

from hack.paths import VERSIONS, Paths, paths

KIND_VERSION = VERSIONS["KIND_VERSION"]


def kind_bin(p: Paths | None = None) -> Path:
    return (p or paths()).cache / f"kind-{KIND_VERSION}" / "bin"
