"""The consumer template (service_template/consumer): its own suite passes on a real broker,
and `scaffold.py NAME --kind consumer` makes a consumer that passes its own tests at once."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from tornado_operator import __version__

from tests.template.support import REPO, TEMPLATE, run_service_tests, summary

CONSUMER = TEMPLATE / "consumer"
SCAFFOLD = TEMPLATE / "scaffold.py"


def scaffold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCAFFOLD), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def new_consumer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scaffold") / "order-feed"
    result = scaffold("order-feed", "--kind", "consumer", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "package order_feed" in result.stdout
    assert "manifest deploy/deployment.yaml" in result.stdout
    return out


def test_the_consumer_template_passes_its_own_tests() -> None:
    result = run_service_tests(CONSUMER)
    assert result.returncode == 0, summary(result)
    passed = re.search(r"(\d+) passed", result.stdout)
    # Real: ack after processing, dead letters, SIGTERM drain, SIGKILL take-over, probes.
    assert passed and int(passed.group(1)) >= 25, summary(result)
    assert "skipped" not in result.stdout.splitlines()[-1], summary(result)


def test_a_new_consumer_passes_its_own_tests(new_consumer: Path) -> None:
    result = run_service_tests(new_consumer)
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)


def test_a_new_consumer_has_its_package_image_and_manifest(new_consumer: Path) -> None:
    assert (new_consumer / "order_feed" / "handler.py").is_file()
    assert not (new_consumer / "hello_consumer").exists()
    assert not (new_consumer / "scaffold.py").exists()
    init = (new_consumer / "order_feed" / "__init__.py").read_text()
    assert 'SERVICE_NAME = "order-feed"' in init
    assert 'IMAGE = "order-feed"' in init
    dockerfile = (new_consumer / "Dockerfile").read_text()
    assert 'CMD ["/opt/venv/bin/python", "-m", "order_feed"]' in dockerfile
    assert "COPY order_feed/ /app/order_feed/" in dockerfile
    deployment = yaml.safe_load((new_consumer / "deploy" / "deployment.yaml").read_text())
    assert deployment["metadata"]["name"] == "order-feed"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "order-feed:0.1.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GROUP"] == "order-feed"


def test_nothing_of_the_template_name_is_left(new_consumer: Path) -> None:
    leftovers = []
    for path in new_consumer.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for word in ("hello", "hello_consumer", "hello-consumer", "consumer-template"):
                if re.search(rf"\b{word}\b", text):
                    leftovers.append(f"{path.relative_to(new_consumer)}: {word}")
    assert not leftovers


def test_a_new_consumer_passes_lint(new_consumer: Path) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the dev extra"
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [ruff, *args, "--no-cache"], cwd=new_consumer, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_an_api_service_gets_nothing_of_the_consumer(tmp_path: Path) -> None:
    result = scaffold("orders", "--output", str(tmp_path / "orders"))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "orders" / "consumer").exists()
    assert (tmp_path / "orders" / "deploy" / "tornadoservice.yaml").is_file()


def test_the_consumer_template_is_of_this_release() -> None:
    init = (CONSUMER / "hello_consumer" / "__init__.py").read_text()
    assert f'__version__ = "{__version__}"' in init
    deployment = yaml.safe_load((CONSUMER / "deploy" / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"tornado-operator/consumer-template:{__version__}"


def test_the_pins_are_the_consumer_extra() -> None:
    pins = {
        line.strip()
        for line in (CONSUMER / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert all("==" in pin for pin in pins)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pins == set(pyproject["project"]["optional-dependencies"]["consumer"])


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    result = scaffold("orders", "--kind", "cron", "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "invalid choice: 'cron'" in result.stderr
    assert not (tmp_path / "out").exists()
