"""The cluster tool (hack/cluster) names a missing prerequisite in one sentence (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack.cluster import local
from hack.paths import Paths


@pytest.fixture
def empty_paths(tmp_path: Path) -> Paths:
    return Paths(cache=tmp_path / "cache", state=tmp_path / "state", run=tmp_path / "run")


def test_not_linux_is_named(monkeypatch: pytest.MonkeyPatch, empty_paths: Paths) -> None:
    monkeypatch.setattr(local.platform, "system", lambda: "Darwin")
    with pytest.raises(local.PrerequisiteError, match="needs Linux; this is Darwin"):
        local.check_prerequisites(empty_paths)


def test_not_root_is_named(monkeypatch: pytest.MonkeyPatch, empty_paths: Paths) -> None:
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    with pytest.raises(local.PrerequisiteError, match="needs root"):
        local.check_prerequisites(empty_paths)


def test_missing_cgroup_controllers_are_named(
    monkeypatch: pytest.MonkeyPatch, empty_paths: Paths
) -> None:
    monkeypatch.setattr(local.os, "geteuid", lambda: 0)
    monkeypatch.setattr(local, "_cgroup_controllers", lambda: {"cpu", "memory"})
    with pytest.raises(
        local.PrerequisiteError, match="cgroup controllers missing: cpuacct, cpuset"
    ):
        local.check_prerequisites(empty_paths)


def test_unbuilt_binaries_point_at_make_prereqs(
    monkeypatch: pytest.MonkeyPatch, empty_paths: Paths
) -> None:
    monkeypatch.setattr(local.os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        local, "_cgroup_controllers", lambda: {"cpu", "cpuacct", "cpuset", "memory"}
    )
    monkeypatch.setattr(local.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    monkeypatch.setattr(local, "Path", lambda *a: _Exists(*a))
    with pytest.raises(local.PrerequisiteError, match=r"etcd .* is not built in .*make prereqs"):
        local.check_prerequisites(empty_paths)


class _Exists(type(Path())):  # type: ignore[misc]
    """A path that exists (for the CNI plugin check) so the binary check is reached."""

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return True


def test_cli_exits_2_with_the_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hack.cluster import __main__ as cli
    from hack.cluster import kind

    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(kind, "running", lambda: False)
    monkeypatch.setattr(kind, "usable", lambda: False)
    monkeypatch.setattr(local, "is_up", lambda p: False)
    assert cli.main(["up", "--provider", "local"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "error: The local cluster needs root (it runs kubelet and containerd)."
    )
