#!/usr/bin/env python3
"""Create a new service from this template.

    python3 service_template/scaffold.py NAME [--kind api|consumer] [--output DIR]

NAME is the service's name, as Kubernetes and the image will know it: lower-case
letters, digits and '-', starting with a letter (for example `order-status`).
The new service gets:
  - its Python package, NAME with '-' turned into '_' (order_status),
    run as `python -m order_status`;
  - its image name, NAME, tagged with the template's version (hello/__init__.py);
  - a sample TornadoService manifest in deploy/tornadoservice.yaml;
  - the template's tests, which pass as soon as the service is created.

--kind api (the default) makes an HTTP service from this directory's template;
--kind consumer makes a stream consumer (Redis Streams, a consumer group) from
consumer/, with deploy/deployment.yaml instead of the TornadoService manifest.

Only the standard library is used, so any Python 3.11+ can run it.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

TEMPLATE_ROOT = Path(__file__).resolve().parent
TEMPLATE_PACKAGE = "hello"
TEMPLATE_IMAGE = "tornado-operator/service-template"
# The template's version is written once, in its package (released with the operator, whose
# version it matches; a unit test checks both).
_VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"$', re.MULTILINE)

# What is not part of a new service: this script, caches, and fetched wheels.
_SKIP = {"scaffold.py", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "wheels"}


class Kind(NamedTuple):
    """One template: where it is, its package and image, and where its name means NAME.

    (A NamedTuple: tests load this file without registering it as a module.)
    """

    root: Path
    package: str
    image: str
    # Where the template's name means the service (NAME) rather than the package. Each must
    # match exactly once, so a change to the template that breaks the scaffold is noticed.
    service_name_sites: dict[str, tuple[str, str]]
    # The template's name as the package (replaced by the package) and as the service name
    # (replaced by NAME), as whole words.
    package_word: re.Pattern[str]
    name_word: re.Pattern[str] | None = None
    # Top-level entries of `root` that belong to another template.
    others: frozenset[str] = frozenset()
    manifest: str = "deploy/tornadoservice.yaml"


KINDS = {
    "api": Kind(
        root=TEMPLATE_ROOT,
        package=TEMPLATE_PACKAGE,
        image=TEMPLATE_IMAGE,
        service_name_sites={
            "hello/__init__.py": ('SERVICE_NAME = "hello"', 'SERVICE_NAME = "{name}"'),
            "Dockerfile": ('image.title="hello"', 'image.title="{name}"'),
            "deploy/tornadoservice.yaml": ("  name: hello\n", "  name: {name}\n"),
        },
        package_word=re.compile(r"\bhello\b"),
        others=frozenset({"consumer"}),
    ),
    "consumer": Kind(
        root=TEMPLATE_ROOT / "consumer",
        package="hello_consumer",
        image="tornado-operator/consumer-template",
        service_name_sites={
            "hello_consumer/__init__.py": (
                'SERVICE_NAME = "hello-consumer"',
                'SERVICE_NAME = "{name}"',
            ),
            "Dockerfile": ('image.title="hello-consumer"', 'image.title="{name}"'),
            "deploy/deployment.yaml": ("  name: hello-consumer\n", "  name: {name}\n"),
        },
        package_word=re.compile(r"\bhello_consumer\b"),
        name_word=re.compile(r"\bhello-consumer\b"),
        manifest="deploy/deployment.yaml",
    ),
}
# Kubernetes object names (DNS-1035 labels), kept short so that names derived from
# it (pods, replica sets) stay within 63 characters.
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
# Packages a service imports or its tests rely on: a service must not shadow them.
_TAKEN = {
    "tornado",
    "prometheus_client",
    "redis",
    "pytest",
    "_pytest",
    "pluggy",
    "support",
    "tests",
}


class ScaffoldError(Exception):
    pass


def template_version(kind: str = "api") -> str:
    """The template package's __version__, read without importing it."""
    init = KINDS[kind].root / KINDS[kind].package / "__init__.py"
    match = _VERSION_LINE.search(init.read_text(encoding="utf-8"))
    if match is None:
        raise ScaffoldError(f"{init} has no __version__ line")
    return match.group(1)


def package_for(name: str) -> str:
    """Check NAME; return its Python package name."""
    if not _NAME.match(name):
        raise ScaffoldError(
            f"invalid service name {name!r}: use 1-40 lower-case letters, digits and '-', "
            "starting with a letter and not ending with '-' (for example order-status)"
        )
    package = name.replace("-", "_")
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in _TAKEN:
        raise ScaffoldError(
            f"invalid service name {name!r}: its package {package!r} would shadow "
            "a Python module of the same name; choose another name"
        )
    return package


def scaffold(name: str, output: Path, kind: str = "api") -> Path:
    """Write a new service called NAME into OUTPUT (which must not exist or be empty)."""
    package = package_for(name)
    template = KINDS[kind]
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ScaffoldError(f"{output} already exists and is not an empty directory")
    sources = sorted(
        p for p in template.root.rglob("*") if p.is_file() and not _skipped(template, p)
    )
    pending = dict(template.service_name_sites)
    files: dict[Path, bytes] = {}
    for source in sources:
        relative = source.relative_to(template.root).as_posix()
        target = Path(template.package_word.sub(package, relative))
        data = source.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            files[target] = data
            continue
        site = pending.pop(relative, None)
        if site is not None:
            old, new = site
            if text.count(old) != 1:
                raise ScaffoldError(f"template file {relative} no longer contains {old!r} once")
            text = text.replace(old, new.format(name=name))
        text = text.replace(template.image, name)
        if template.name_word is not None:
            text = template.name_word.sub(name, text)
        text = template.package_word.sub(package, text)
        files[target] = text.encode("utf-8")
    if pending:
        raise ScaffoldError(f"template files missing: {', '.join(sorted(pending))}")
    for target, data in files.items():
        path = output / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        shutil.copymode(template.root / _source_of(template, target, package), path)
    return output


def _skipped(template: Kind, path: Path) -> bool:
    parts = path.relative_to(template.root).parts
    if parts and parts[0] in template.others:
        return True
    return any(part in _SKIP for part in parts) or path.suffix == ".pyc"


def _source_of(template: Kind, target: Path, package: str) -> Path:
    parts = list(target.parts)
    if parts and parts[0] == package:
        parts[0] = template.package
    return Path(*parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scaffold.py",
        description="Create a new Tornado service from the tornado-operator service template.",
    )
    parser.add_argument("name", help="service name, e.g. order-status")
    parser.add_argument(
        "--kind",
        choices=sorted(KINDS),
        default="api",
        help="api: an HTTP service (default); consumer: a stream consumer",
    )
    parser.add_argument(
        "--output", type=Path, help="directory to create (default: ./NAME)", default=None
    )
    args = parser.parse_args(argv)
    output: Path = args.output if args.output is not None else Path(args.name)
    try:
        scaffold(args.name, output, args.kind)
    except ScaffoldError as exc:
        print(f"scaffold: {exc}", file=sys.stderr)
        return 2
    package = package_for(args.name)
    print(
        f"Created service {args.name} in {output}: package {package}, "
        f"image {args.name}:{template_version(args.kind)}, "
        f"manifest {KINDS[args.kind].manifest}.\n"
        f"Next: cd {output} && python -m pip install -r requirements-test.txt "
        f"&& python -m pytest && python -m {package}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
