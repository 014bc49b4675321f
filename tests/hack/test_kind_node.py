"""The kind node tooling without Docker: the engine's configuration and the image layers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from hack.kind_node import engine, image


def test_engine_is_its_own_and_adds_no_iptables_rules() -> None:
    cfg = engine.config()
    # `bridge: none` would make dockerd delete the machine's docker0 at startup.
    assert cfg["bridge"] == engine.BRIDGE != "docker0"
    # With address pools set, a restarted dockerd deletes docker0 too.
    assert "default-address-pools" not in cfg
    assert cfg["iptables"] is False and cfg["ip-forward"] is False and cfg["ip-masq"] is False
    assert cfg["hosts"] == [engine.DOCKER_HOST] != ["unix:///var/run/docker.sock"]
    assert cfg["default-runtime"] == engine.RUNTIME
    runtimes = cfg["runtimes"]
    assert isinstance(runtimes, dict)
    assert runtimes[engine.RUNTIME]["path"].endswith("/runc-nosysresource")
    assert not str(cfg["exec-root"]).startswith("/run/tornado-operator/")  # local `down` removes it


def test_layer_adds_parent_directories_before_entries(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"#!/bin/true\n")
    layer = image._layer(
        [
            ("lib", "->usr/lib"),
            ("tmp", None),
            ("usr/local/bin/tool", binary),
            ("usr/lib/x.so", binary),
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        names = tar.getnames()
        members = {m.name: m for m in tar.getmembers()}
    assert names == [
        "lib", "tmp", "usr", "usr/local", "usr/local/bin", "usr/local/bin/tool",
        "usr/lib", "usr/lib/x.so",
    ]  # fmt: skip
    assert members["lib"].issym() and members["lib"].linkname == "usr/lib"
    assert members["tmp"].mode == 0o1777
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


def test_archive_is_a_docker_save_of_one_layer() -> None:
    data = image._archive("example.local/x:1", image._layer([("tmp", None)]), {"Env": ["A=1"]})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        [manifest] = json.load(f)
    assert manifest["RepoTags"] == ["example.local/x:1"] and manifest["Layers"] == ["layer.tar"]


def test_node_image_is_named_by_version_and_recipe() -> None:
    ref = image.node_image()
    assert ref.startswith(f"{image.REPOSITORY}:v1.") and ref.endswith("-" + image.recipe())
