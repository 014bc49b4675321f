"""Pure functions: does a live child already say what the rendered manifest says?

Server-side apply of an unchanged manifest changes nothing, but it is still a write request, and
at a thousand services those requests are most of the API server's work. So before applying, the
operator compares:

- the hash of the rendered manifest with the one recorded on the child when it was applied
  (`HASH_ANNOTATION`): a different hash means the spec asks for something else, including fields
  that are no longer rendered and must go, which a comparison of present fields cannot see;
- every rendered field with the live one: a difference means somebody edited the child by hand
  (drift), and it is applied again.

The live object has more than we render (defaults, other managers' fields, status): those are
not compared. Quantities are compared by value, because the API server writes them in canonical
form ("0.5" comes back as "500m").
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from tornado_operator import GROUP

JSONDict = dict[str, Any]

HASH_ANNOTATION = f"{GROUP}/rendered-hash"

# Keys whose string values are resource quantities (container resources, emptyDir sizes).
_QUANTITY_PARENTS = frozenset({"limits", "requests"})
_QUANTITY_KEYS = frozenset({"sizeLimit"})
_QUANTITY = re.compile(
    r"^([+-]?[0-9]*\.?[0-9]+)([eE][+-]?[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$"
)
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def rendered_hash(manifest: JSONDict) -> str:
    """A short, stable digest of a rendered manifest (its own hash annotation left out)."""
    meta = dict(manifest.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    text = json.dumps({**manifest, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def with_hash(manifest: JSONDict) -> JSONDict:
    """The manifest with its hash recorded in HASH_ANNOTATION."""
    meta = dict(manifest["metadata"])
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        HASH_ANNOTATION: rendered_hash(manifest),
    }
    return {**manifest, "metadata": meta}


def recorded_hash(obj: JSONDict | None) -> str | None:
    if obj is None:
        return None
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    return str(value) if value is not None else None


def quantity(value: str) -> Decimal | None:
    """A Kubernetes quantity's value, or None when the string is not one."""
    match = _QUANTITY.match(value)
    if not match:
        return None
    number, exponent, suffix = match.groups()
    try:
        result = Decimal(number) * _SUFFIX[suffix or ""]
        return result * (Decimal(10) ** int(exponent[1:])) if exponent else result
    except (InvalidOperation, ValueError):
        return None


def _same_scalar(want: Any, have: Any, key: str, parent: str) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, int | float) and isinstance(have, int | float):
        return want == have
    quantity_field = key in _QUANTITY_KEYS or parent in _QUANTITY_PARENTS
    if (
        quantity_field
        and isinstance(want, str | int | float)
        and isinstance(have, str | int | float)
    ):
        a, b = quantity(str(want)), quantity(str(have))
        return a is not None and a == b
    return False


def _omitted(value: Any) -> bool:
    """Whether the API server leaves this value out when it serializes the field.

    Go's `omitempty` drops zero numbers, empty strings, lists and maps of non-pointer fields
    (minReadySeconds: 0, a probe's initialDelaySeconds: 0). False is not among them here: the
    booleans we render are pointers (automountServiceAccountToken, allowPrivilegeEscalation...),
    which are kept when false and mean something else when absent.
    """
    if isinstance(value, bool):
        return False
    return value in (0, "") or value == [] or value == {}


def contains(want: Any, have: Any, key: str = "", parent: str = "") -> bool:
    """Whether `have` holds every field of `want` with the same value. Lists must have the same
    length (we render whole lists: containers, ports, env) and match item by item."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(
            contains(v, have[k], k, key) if k in have else _omitted(v) for k, v in want.items()
        )
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(contains(w, h, key, parent) for w, h in zip(want, have, strict=True))
    return _same_scalar(want, have, key, parent)


def up_to_date(rendered: JSONDict, live: JSONDict | None) -> bool:
    """Whether applying `rendered` (a manifest from `with_hash`) would change nothing we own."""
    if live is None:
        return False
    if recorded_hash(live) != recorded_hash(rendered):
        return False
    return contains(rendered, live)
