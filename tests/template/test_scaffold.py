"""The scaffold command: a new service from the template passes its own tests at once."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.template.support import REPO, TEMPLATE, run_service_tests, summary

SCAFFOLD = TEMPLATE / "scaffold.py"


def scaffold(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCAFFOLD), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def new_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scaffold") / "order-status"
    result = scaffold("order-status", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "package order_status" in result.stdout
    return out


def test_new_service_passes_its_own_tests(new_service: Path) -> None:
    result = run_service_tests(new_service)
    assert result.returncode == 0, summary(result)
    assert re.search(r"\d+ passed", result.stdout), summary(result)


def test_new_service_has_its_package_image_and_manifest(new_service: Path) -> None:
    assert (new_service / "order_status" / "__main__.py").is_file()
    assert not (new_service / "hello").exists()
    assert not (new_service / "scaffold.py").exists()
    init = (new_service / "order_status" / "__init__.py").read_text()
    assert 'SERVICE_NAME = "order-status"' in init
    assert 'IMAGE = "order-status"' in init
    dockerfile = (new_service / "Dockerfile").read_text()
    assert 'CMD ["/opt/venv/bin/python", "-m", "order_status"]' in dockerfile
    assert "COPY order_status/ /app/order_status/" in dockerfile

    manifest = yaml.safe_load((new_service / "deploy" / "tornadoservice.yaml").read_text())
    assert manifest == {
        "apiVersion": "tornado-operator.dev/v1alpha1",
        "kind": "TornadoService",
        "metadata": {"name": "order-status"},
        "spec": {"image": "order-status:0.1.0", "replicas": 2},
    }


def test_nothing_of_the_template_name_is_left(new_service: Path) -> None:
    leftovers = []
    for path in new_service.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for word in ("hello", "service-template", "service_template"):
                if re.search(rf"\b{word}\b", text):
                    leftovers.append(f"{path.relative_to(new_service)}: {word}")
    assert not leftovers


def test_new_service_passes_lint(new_service: Path) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the dev extra"
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [ruff, *args, "--no-cache"], cwd=new_service, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_match_the_crd_schema(new_service: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from tornado_operator import crd

    schema = crd.spec_json_schema()
    document = crd.crd()
    group, versions = document["spec"]["group"], [v["name"] for v in document["spec"]["versions"]]
    for path in (
        TEMPLATE / "deploy" / "tornadoservice.yaml",
        new_service / "deploy/tornadoservice.yaml",
    ):
        manifest = yaml.safe_load(path.read_text())
        api_group, _, version = manifest["apiVersion"].partition("/")
        assert (api_group, manifest["kind"]) == (group, document["spec"]["names"]["kind"])
        assert version in versions
        jsonschema.validate(manifest["spec"], schema)


def test_template_manifest_names_the_template_image() -> None:
    manifest = yaml.safe_load((TEMPLATE / "deploy" / "tornadoservice.yaml").read_text())
    assert manifest["spec"] == {"image": "tornado-operator/service-template:0.1.0", "replicas": 2}


def test_default_output_is_the_name_in_the_current_directory(tmp_path: Path) -> None:
    result = scaffold("inventory", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "inventory" / "inventory" / "server.py").is_file()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Orders", "lower-case"),
        ("2fast", "starting with a letter"),
        ("order_status", "lower-case letters, digits and '-'"),
        ("orders-", "not ending with '-'"),
        ("a" * 41, "1-40"),
        ("json", "shadow"),
        ("tornado", "shadow"),
        ("import", "shadow"),
    ],
)
def test_bad_names_are_refused_with_one_line(tmp_path: Path, name: str, reason: str) -> None:
    result = scaffold(name, "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scaffold: invalid service name"), lines
    assert reason in lines[0]
    assert not (tmp_path / "out").exists()


def test_existing_directory_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = scaffold("orders", "--output", str(tmp_path))
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
