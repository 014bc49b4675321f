"""The template as it is: its own test suite (service_template/tests) passes."""

from __future__ import annotations

import re

from tests.template.support import TEMPLATE, run_service_tests, summary


def test_template_passes_its_own_tests() -> None:
    result = run_service_tests(TEMPLATE)
    assert result.returncode == 0, summary(result)
    passed = re.search(r"(\d+) passed", result.stdout)
    # The suite is real: every endpoint, shutdown, fan-out, limits, configuration.
    assert passed and int(passed.group(1)) >= 50, summary(result)
    assert "skipped" not in result.stdout.splitlines()[-1], summary(result)
