"""The kind node tooling without Docker: the engine's configuration and the image layers."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shlex
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from hack.cluster import kind, netpol
from hack.kind_node import engine, image
from hack.paths import NODE_IP, NODE_NAME, POD_CIDR, REPO, SERVICE_CIDR, Paths, paths


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


# ------------------------------------------------------------------ the NetworkPolicy enforcer


def test_kube_router_runs_with_the_local_clusters_flags() -> None:
    args = image.kube_router_args()
    local = netpol.argv(paths())
    # The firewall alone, as on the local cluster: no routing, no service proxy, no CNI.
    assert all(flag in args for flag in netpol.FIREWALL_ONLY)
    assert all(flag in local for flag in netpol.FIREWALL_ONLY)
    assert "--run-router=false" in args and "--run-service-proxy=false" in args
    assert f"--kubeconfig={image.KUBE_ROUTER_KUBECONFIG}" in args
    assert f"--service-cluster-ip-range={image.SERVICE_SUBNET}" in args
    # One flag each: no leftover of the local cluster's paths or node name.
    names = [a.split("=", 1)[0] for a in args]
    assert len(names) == len(set(names))
    assert not any(str(paths().state) in a or NODE_NAME in a for a in args)


def test_kind_config_keeps_kinds_defaults_and_the_project_config_the_images() -> None:
    """The user-facing file keeps kind's subnets; the project's node is given the image's
    (the static CNI, the hermetic chain and kube-router's Service range assume them)."""
    cfg = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    networking = cfg.get("networking") or {}
    assert "podSubnet" not in networking and "serviceSubnet" not in networking
    assert len(cfg["nodes"]) == 1  # the static CNI and kube-router's admin.conf: one node
    project = yaml.safe_load(kind.project_config())
    assert project["networking"] == {
        **networking,
        "podSubnet": image.POD_SUBNET,
        "serviceSubnet": image.SERVICE_SUBNET,
    }
    assert project["nodes"] == cfg["nodes"]


def test_the_nodes_subnets_are_no_one_elses() -> None:
    """Neither the local cluster's (its Service range is kind's default) nor the engine's."""
    kind_nets = [ipaddress.ip_network(n) for n in (image.POD_SUBNET, image.SERVICE_SUBNET)]
    others = [POD_CIDR, SERVICE_CIDR, f"{NODE_IP}/32", engine.KIND_SUBNET, engine.BRIDGE_ADDRESS]
    for net in kind_nets:
        for other in others:
            assert not net.overlaps(ipaddress.ip_network(other, strict=False)), (net, other)
    entrypoint = (image.FILES / "entrypoint").read_text()
    assert "-d @SERVICE_SUBNET@ -p tcp" in entrypoint and "-d @POD_SUBNET@ -j RETURN" in entrypoint
    # The Service range's rejects come before anything the chain lets through.
    assert entrypoint.index("-d @SERVICE_SUBNET@") < entrypoint.index("-j RETURN")


def test_the_host_routes_the_nodes_subnets_over_kinds_bridge_only() -> None:
    assert kind.ROUTED == (image.POD_SUBNET, image.SERVICE_SUBNET)
    via = ["via", "10.231.0.2", "dev", "tornado-kind1"]
    assert kind.route_commands("10.231.0.2") == [
        ["ip", "route", "replace", image.POD_SUBNET, *via],
        ["ip", "route", "replace", image.SERVICE_SUBNET, *via],
    ]
    assert ipaddress.ip_address("10.231.0.2") in ipaddress.ip_network(engine.KIND_SUBNET)
    # `down` deletes them on that bridge only (a route to those subnets elsewhere is not ours).
    assert kind.unroute_commands() == [
        ["ip", "route", "del", image.POD_SUBNET, "dev", engine.KIND_BRIDGE],
        ["ip", "route", "del", image.SERVICE_SUBNET, "dev", engine.KIND_BRIDGE],
    ]


def _fake_paths(tmp: Path) -> Paths:
    p = Paths(cache=tmp / "cache", state=tmp / "state", run=tmp / "run")
    p.bin.mkdir(parents=True)
    (p.bin / "kube-router").write_bytes(b"#!/bin/true\n")
    return p


def test_kube_router_layer_is_a_unit_started_once_kubeadm_is_done(tmp_path: Path) -> None:
    p = _fake_paths(tmp_path)
    root = tmp_path / "rootfs"
    image._install_kube_router(p, root)
    binary = root / "usr/local/bin/kube-router"
    wrapper = root / "usr/local/bin/kube-router-firewall"
    assert binary.read_bytes() == (p.bin / "kube-router").read_bytes()
    assert wrapper.stat().st_mode & 0o111 == 0o111
    service = (root / "etc/systemd/system/kube-router.service").read_text()
    [exec_start] = [ln for ln in service.splitlines() if ln.startswith("ExecStart=")]
    assert exec_start.split() == [
        "ExecStart=/usr/local/bin/kube-router-firewall",
        *image.kube_router_args(),
    ]
    assert "Restart=always" in service and "@" not in service.replace("%H", "")
    path_unit = (root / "etc/systemd/system/kube-router.path").read_text()
    assert f"PathExists={image.KUBE_ROUTER_KUBECONFIG}" in path_unit
    # Enabled through the path unit: it starts the service once admin.conf exists.
    link = root / "etc/systemd/system/multi-user.target.wants/kube-router.path"
    assert link.is_symlink() and str(link.readlink()) == "/etc/systemd/system/kube-router.path"
    assert not (root / "etc/systemd/system/multi-user.target.wants/kube-router.service").exists()


def test_kube_router_layer_needs_the_built_binary(tmp_path: Path) -> None:
    p = _fake_paths(tmp_path)
    (p.bin / "kube-router").unlink()
    with pytest.raises(RuntimeError, match=r"build-binaries\.sh .* kube-router"):
        image._install_kube_router(p, tmp_path / "rootfs")


def test_the_image_has_ipset_and_is_rebuilt_when_the_enforcer_changes() -> None:
    assert "ipset" in image.BASE_PACKAGES
    inputs = image.recipe_inputs()
    # kube-router's version (versions.env), its flags (netpol.py), its unit and wrapper.
    assert {"versions.env", "netpol.py", "kube-router.service", "kube-router.path",
            "kube-router-firewall"} <= {f.name for f in inputs}  # fmt: skip
    assert "KUBE_ROUTER_VERSION" in (image.HERE.parent / "versions.env").read_text()
    # The chain the wrapper keeps first is the one the entrypoint makes.
    assert f":{image.HERMETIC_CHAIN} - [0:0]" in (image.FILES / "entrypoint").read_text()


# The wrapper's hermetic_first, run by bash against stub iptables commands: `iptables -S CHAIN`
# prints $STUBS/CHAIN (exit 1 when missing), iptables-restore appends its input to $STUBS/restored.
_STUB_IPTABLES = """#!/bin/bash
chain=${@: -1}
[[ -f $STUBS/$chain ]] || { echo "iptables: No chain/target/match by that name." >&2; exit 1; }
cat "$STUBS/$chain"
"""
_STUB_RESTORE = """#!/bin/bash
cat >>"$STUBS/restored"
"""


def _hermetic_first(tmp: Path, chains: dict[str, list[str]]) -> str:
    stubs = tmp / "stubs"
    stubs.mkdir()
    for name, text in (("iptables", _STUB_IPTABLES), ("iptables-restore", _STUB_RESTORE)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    for chain, rules in chains.items():
        (stubs / chain).write_text(f"-N {chain}\n" + "".join(f"-A {chain} {r}\n" for r in rules))
    script = image.FILES / "kube-router-firewall"
    subprocess.run(
        ["bash", "-c", f'source "{script}" && hermetic_first'],
        env={**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUBS": str(stubs)},
        check=True,
        timeout=30,
    )
    restored = stubs / "restored"
    return restored.read_text() if restored.exists() else ""


HOOK = " ".join(image.HERMETIC_HOOK)
ACCEPT = "-m comment --comment x -m mark --mark 0x20000/0x20000 -j ACCEPT"


def test_hermetic_first_does_nothing_before_kube_router_made_its_chains(tmp_path: Path) -> None:
    assert _hermetic_first(tmp_path, {}) == ""


def test_hermetic_first_inserts_the_jump_in_one_transaction(tmp_path: Path) -> None:
    restored = _hermetic_first(
        tmp_path, {"KUBE-ROUTER-FORWARD": [ACCEPT], "KUBE-ROUTER-OUTPUT": []}
    )
    assert restored == (
        f"*filter\n-I KUBE-ROUTER-FORWARD 1 {HOOK}\n-I KUBE-ROUTER-OUTPUT 1 {HOOK}\nCOMMIT\n"
    )


def test_hermetic_first_moves_a_jump_that_is_not_first(tmp_path: Path) -> None:
    restored = _hermetic_first(
        tmp_path,
        {"KUBE-ROUTER-FORWARD": [ACCEPT, HOOK], "KUBE-ROUTER-OUTPUT": [HOOK, ACCEPT]},
    )
    assert restored == (
        f"*filter\n-D KUBE-ROUTER-FORWARD {HOOK}\n-I KUBE-ROUTER-FORWARD 1 {HOOK}\nCOMMIT\n"
    )


def test_node_rules_are_read_as_the_enforcer_check_expects() -> None:
    """`iptables -S` of a synced chain with the hook first, as kind.enforcer_problems reads it."""
    forward = [shlex.split(HOOK), shlex.split(ACCEPT)]
    assert forward[0] == list(image.HERMETIC_HOOK)
    assert netpol.synced_rules(forward) and not netpol.synced_rules(forward[:1])
