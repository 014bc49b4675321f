"""A burst of TornadoService edits on the operator (issue 13, item 7), small enough for CI.

benchmarks/operator_edit_burst.py is the measurement (200 edits/s for 30 s); this runs the same
code at 50 edits/s for 10 s over 20 services and asserts what the issue asks: no crash, memory
bounded, and every service converged to its last edit afterwards. The operator is a real process
(its own RSS from /proc), watching only the test's namespace.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.operator_edit_burst import Config, run, table

pytest_plugins = ["tests.e2e.operator_fixtures"]

# The operator idles at about 80 MiB; a backlog that grew with the edits would pass this.
RSS_LIMIT_MIB = 300.0
# Seconds from the last edit until all 20 services show it: one reconcile each, coalesced.
CONVERGE_LIMIT = 60.0


async def test_edit_burst_leaves_the_operator_alive_bounded_and_converged(
    kubeconfig: Path, operator_crds: None, tmp_path: Path
) -> None:
    cfg = Config(services=20, rate=50, seconds=10, converge_limit=120, settle=2)
    result = await run(cfg, kubeconfig, tmp_path)
    print(table(result))
    print("\n".join(result.log_problems[:10]))
    assert result.alive and result.exit_code is None, "the operator exited"
    assert result.healthy_after and not result.log_problems
    assert result.edits_ok >= 0.95 * cfg.rate * cfg.seconds, result.edit_errors
    assert result.converged_after_s is not None, f"{result.not_converged} not converged"
    assert result.converged_after_s <= CONVERGE_LIMIT
    assert result.hwm_mib <= RSS_LIMIT_MIB
