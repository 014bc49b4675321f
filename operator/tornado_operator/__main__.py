"""`tornado-operator run` (also `python -m tornado_operator run`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from tornado_operator import lean_imports
from tornado_operator import settings as settings_mod


def run(cfg: settings_mod.Settings) -> None:
    if "kopf" not in sys.modules:
        # Before kopf and the client are imported: their unused models stay out (47 MiB).
        lean_imports.apply()
    import kopf

    # Importing the handlers registers them with kopf; they get `cfg` through kopf's memo.
    from tornado_operator import handlers

    kopf.configure(
        debug=cfg.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object" if cfg.log_format == "json" else None,
    )
    logging.getLogger().setLevel(cfg.log_level)
    if cfg.log_level != "DEBUG":
        # The Kubernetes client logs every request at DEBUG; keep it out of the operator's log.
        logging.getLogger("urllib3").setLevel(logging.WARNING)
        # One line per liveness probe is noise, not information.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        logging.getLogger("kopf.objects").addFilter(handlers.QuietWatchHandlers())
    kopf.run(
        clusterwide=cfg.clusterwide,
        namespaces=cfg.namespaces,
        standalone=True if cfg.standalone else None,
        peering_name=None if cfg.standalone else cfg.peering,
        priority=None if cfg.standalone else cfg.effective_priority(),
        liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz",
        memo=kopf.Memo(settings=cfg),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = settings_mod.parser()
    args = parser.parse_args(argv)
    try:
        cfg = settings_mod.from_args(args)
    except settings_mod.SettingsError as exc:
        parser.error(str(exc))
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
