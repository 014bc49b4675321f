"""kopf's readiness ToggleSet, as the operator patches it: waiters wake when the set changes
between on and off, not for every toggle added or dropped."""

from __future__ import annotations

import asyncio

import kopf
from kopf._cogs.aiokits import aiotoggles
from tornado_operator import handlers, kopf_toggles


def test_the_operator_patches_the_kopf_it_pins() -> None:
    assert handlers.kopf_toggles is kopf_toggles  # importing the handlers applies it
    assert kopf.__version__ == kopf_toggles.PATCHED_KOPF_VERSION
    assert kopf_toggles.applied()


async def test_waiters_are_released_when_the_last_toggle_drops() -> None:
    # kopf's start-up: one toggle per listed object, each worker drops its own and waits for
    # the set (all) to be on.
    ready = aiotoggles.ToggleSet(all)
    toggles = [await ready.make_toggle(name=str(i)) for i in range(3000)]
    wakeups = 0
    real_notify_all = ready._condition.notify_all

    def counting_notify_all() -> None:
        nonlocal wakeups
        wakeups += 1
        real_notify_all()

    ready._condition.notify_all = counting_notify_all  # type: ignore[method-assign]
    released: list[int] = []

    async def worker(i: int) -> None:
        await ready.drop_toggle(toggles[i])
        await ready.wait_for(True)
        released.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(len(toggles) - 1)]
    await asyncio.sleep(0.1)
    assert released == [] and ready.is_off()  # one toggle is still off: everyone waits
    tasks.append(asyncio.create_task(worker(len(toggles) - 1)))
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(released) == list(range(len(toggles)))
    assert wakeups == 1  # kopf 1.45.2 notifies on each of the 3000 drops


async def test_a_new_off_toggle_wakes_those_waiting_for_off() -> None:
    paused = aiotoggles.ToggleSet(any)
    running = await paused.make_toggle(False)
    waiter = asyncio.create_task(paused.wait_for(True))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await paused.make_toggle(True)  # the set turns on
    await asyncio.wait_for(waiter, 1)
    off_waiter = asyncio.create_task(paused.wait_for(False))
    await asyncio.sleep(0.01)
    assert not off_waiter.done()
    await paused.drop_toggles([t for t in paused if t.is_on()])
    await asyncio.wait_for(off_waiter, 1)
    # A single toggle turned on still wakes waiters (kopf's own path, unchanged).
    again = asyncio.create_task(paused.wait_for(True))
    await asyncio.sleep(0.01)
    await running.turn_to(True)
    await asyncio.wait_for(again, 1)
