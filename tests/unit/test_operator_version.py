"""The version is written once, as tornado_operator.__version__; whatever spells it agrees.

Python reads it (packaging, the default image, the scaffold through the template's own
__version__); files that cannot import it (the chart, Dockerfiles, manifests, docs) are checked
here.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from tornado_operator import DEFAULT_IMAGE, __version__

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/tornado-operator"
TEMPLATE = ROOT / "service_template"
# The project's own images, as docs, charts and manifests spell them.
PROJECT_IMAGE = re.compile(r"\btornado-operator/(?:operator|service-template):([\w.-]+)")
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    TEMPLATE / "README.md",
    TEMPLATE / "deploy/tornadoservice.yaml",
    CHART / "Chart.yaml",
    CHART / "files/crds/tornadoservices.tornado-operator.dev.yaml",
    ROOT / "operator/Dockerfile",
]


def load_scaffold() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scaffold", TEMPLATE / "scaffold.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packaging_reads_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "tornado_operator.__version__"}


def test_default_image_is_the_template_of_this_release() -> None:
    repository, _, tag = DEFAULT_IMAGE.rpartition(":")
    assert (repository, tag) == ("tornado-operator/service-template", __version__)


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == __version__
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    # Empty: the chart's appVersion.
    assert values["image"]["tag"] in ("", __version__)
    service_image = values["operator"]["defaultServiceImage"]
    assert f"{service_image['repository']}:{service_image['tag']}" == DEFAULT_IMAGE


def test_the_template_is_released_with_the_operator() -> None:
    scaffold = load_scaffold()
    assert scaffold.template_version() == __version__
    dockerfile = (TEMPLATE / "Dockerfile").read_text(encoding="utf-8")
    assert f'org.opencontainers.image.version="{__version__}"' in dockerfile
    manifest = yaml.safe_load((TEMPLATE / "deploy/tornadoservice.yaml").read_text("utf-8"))
    assert manifest["spec"]["image"] == DEFAULT_IMAGE


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_name_this_release(path: Path) -> None:
    tags = PROJECT_IMAGE.findall(path.read_text(encoding="utf-8"))
    assert tags, f"{path} names no project image: take it off this list"
    assert all(tag == __version__ for tag in tags), (path, sorted(set(tags)))
