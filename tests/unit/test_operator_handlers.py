"""The kopf wiring: watches derived from the kind table, settings through kopf's memo."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest
from kopf._core.intents import registries
from tornado_operator import FIELD_MANAGER, handlers, labels
from tornado_operator import __main__ as cli
from tornado_operator import settings as settings_mod
from tornado_operator.children import CHILD_KINDS
from tornado_operator.reconcile import Reconciler

MANAGED = {labels.MANAGED_BY: FIELD_MANAGER}


def watching() -> dict[tuple[str | None, str | None, str | None], Any]:
    registry = registries.get_default_registry()
    return {
        (h.selector.group, h.selector.version, h.selector.plural): h
        for h in registry._watching.get_all_handlers()
        if h.selector is not None
    }


def test_one_watch_per_child_kind_and_the_pods() -> None:
    found = watching()
    for child in CHILD_KINDS:
        handler = found[(child.group, child.version, child.plural)]
        assert handler.fn is handlers.child_event
        assert handler.labels == MANAGED
    pods = found[("", "v1", "pods")]
    assert pods.fn is handlers.pod_event and pods.labels == MANAGED
    # And every TornadoService, unfiltered, for the links between them (composition.topology).
    links = found[("tornado-operator.dev", "v1alpha1", None)]
    assert links.fn is handlers.tornadoservice_event and links.labels is None
    assert len(found) == len(CHILD_KINDS) + 2
    ids = [h.id for h in found.values()]
    assert len(set(ids)) == len(ids)


class FakeKube:
    pass


async def fake_kube(cls: type) -> FakeKube:
    return FakeKube()


def run_configure(memo: kopf.Memo, monkeypatch: pytest.MonkeyPatch) -> kopf.OperatorSettings:
    monkeypatch.setattr(handlers.Kube, "from_environment", classmethod(fake_kube))
    started: list[int] = []
    monkeypatch.setattr(handlers, "_start_metrics", started.append)
    settings = kopf.OperatorSettings()
    # kopf passes its indexes to every handler by name.
    indexes = {handlers.PARENT_INDEX: {}, handlers.POD_INDEX: {}}
    indexes.update({key: {} for key in handlers.CHILD_INDEXES.values()})
    asyncio.run(handlers.configure(settings=settings, memo=memo, **indexes))
    return settings


def test_startup_reads_settings_from_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORNADO_OPERATOR_DEFAULT_IMAGE", "from/env:1")
    cfg = settings_mod.Settings(default_image="from/memo:2", metrics_port=0)
    memo = kopf.Memo(settings=cfg)
    settings = run_configure(memo, monkeypatch)
    reconciler = memo["reconciler"]
    assert isinstance(reconciler, Reconciler) and reconciler.default_image == "from/memo:2"
    assert memo["settings"] is cfg
    for resource in handlers.WATCHED:
        assert (
            settings.watching.label_selectors[resource.group, resource.version, resource.plural]
            == labels.MANAGED_SELECTOR
        )
    assert len(settings.watching.label_selectors) == len(CHILD_KINDS) + 1


def test_startup_sets_the_peering_lifetime(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kopf.OperatorSettings().peering.lifetime == 60  # kopf's own default
    memo = kopf.Memo(settings=settings_mod.Settings(metrics_port=0))
    assert run_configure(memo, monkeypatch).peering.lifetime == 10
    memo = kopf.Memo(settings=settings_mod.Settings(metrics_port=0, peering_lifetime_seconds=25))
    assert run_configure(memo, monkeypatch).peering.lifetime == 25


def test_startup_retries_api_requests_for_minutes_at_most_5s_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sum(kopf.OperatorSettings().networking.error_backoffs) == 54  # kopf's own budget
    memo = kopf.Memo(settings=settings_mod.Settings(metrics_port=0))
    backoffs = list(run_configure(memo, monkeypatch).networking.error_backoffs)
    assert max(backoffs) == 5 and sum(backoffs) >= 300


def test_startup_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # As when kopf loads the module itself (`kopf run -m tornado_operator.handlers`).
    monkeypatch.setenv("TORNADO_OPERATOR_DEFAULT_IMAGE", "from/env:1")
    memo = kopf.Memo()
    run_configure(memo, monkeypatch)
    assert memo["settings"] == settings_mod.from_env()
    assert memo["reconciler"].default_image == "from/env:1"


def test_cli_hands_settings_to_kopf_in_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    assert cli.main(["run", "--default-image", "flag/x:3", "--standalone"]) == 0
    [kwargs] = calls
    cfg = kwargs["memo"]["settings"]
    assert isinstance(cfg, settings_mod.Settings)
    assert cfg.default_image == "flag/x:3" and cfg.standalone
    assert kwargs["standalone"] is True and kwargs["clusterwide"]
    assert not hasattr(handlers, "configured")


def test_watch_handler_successes_are_left_out_of_the_log() -> None:
    quiet = handlers.QuietWatchHandlers()

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)

    assert not quiet.filter(record(logging.INFO, "Handler 'pod_event' succeeded."))
    assert not quiet.filter(record(logging.INFO, "Handler 'deployments-event' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'resume' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'pod_event' failed with an exception."))
    assert quiet.filter(record(logging.WARNING, "Handler 'pod_event' succeeded."))
