"""kopf's start-up readiness, made linear in the number of watched objects.

Before kopf handles any event it waits until every index has seen its initial listing. It
tracks that with one toggle per listed object in a `ToggleSet`, and every object's worker waits
on the set's condition. kopf 1.45.2 wakes every waiter whenever a toggle is added or dropped
(`notify_all` in `make_toggle` and `drop_toggle`), although a waiter only asks whether the whole
set is on. With a thousand TornadoServices (about 7,000 objects: children and pods) that is
tens of millions of wake-ups: a restarted operator spent minutes at full CPU before its first
resume handler ran, and the memory of the queued wake-ups (measured with benchmarks/
operator_scale.py: no reconcile after 5 min, 350 MiB).

Here the set wakes its waiters only when adding or dropping a toggle changes what the set says
(on or off), which is all `ToggleSet.wait_for` waits for. A single toggle turned on or off
(`Toggle.turn_to`, used for the peering pause) still wakes them as before. This is a patch of a
private kopf class, so it is applied only to the kopf version it was written for, and
`tests/unit/test_kopf_toggles.py` checks both the behaviour and that the patch is in place.
"""

from __future__ import annotations

from collections.abc import Iterable

import kopf
from kopf._cogs.aiokits import aiotoggles

PATCHED_KOPF_VERSION = "1.45.2"


async def _make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.discard(toggle)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


def apply() -> bool:
    """Patch kopf's ToggleSet when kopf is the version this was written for; whether it was."""
    if getattr(kopf, "__version__", None) != PATCHED_KOPF_VERSION:
        return False
    aiotoggles.ToggleSet.make_toggle = _make_toggle  # type: ignore[method-assign]
    aiotoggles.ToggleSet.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    aiotoggles.ToggleSet.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    return True


def applied() -> bool:
    return aiotoggles.ToggleSet.make_toggle is _make_toggle
