"""Status conditions in the metav1.Condition shape."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
TYPES = (READY, PROGRESSING, DEGRADED)

JSONDict = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "True" if self.status else "False"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    previous: Iterable[JSONDict],
    current: Sequence[Condition],
    generation: int,
    now: str,
) -> list[JSONDict]:
    """The new conditions list. lastTransitionTime moves only when a status flips, as the
    metav1.Condition contract says; reasons and messages follow the latest observation."""
    before = {c.get("type"): c for c in previous if isinstance(c, dict)}
    out: list[JSONDict] = []
    for cond in current:
        old = before.get(cond.type)
        unchanged = old is not None and old.get("status") == cond.status_text
        out.append(
            {
                "type": cond.type,
                "status": cond.status_text,
                "observedGeneration": generation,
                "lastTransitionTime": (
                    str(old.get("lastTransitionTime") or now) if unchanged and old else now
                ),
                "reason": cond.reason,
                "message": cond.message[:32768],
            }
        )
    return out


def find(conditions: Iterable[JSONDict], type_: str) -> JSONDict | None:
    for cond in conditions:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None
