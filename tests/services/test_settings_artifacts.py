"""State-directory settings and fsspec artifact storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from services import artifacts, settings


def test_defaults_live_under_state_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (settings.STATE_DIR_ENV, settings.STORE_URL_ENV, settings.ARTIFACTS_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert settings.state_dir() == tmp_path.resolve() / "state"
    assert not (tmp_path / "state").exists()
    assert settings.store_url() == f"sqlite:///{tmp_path.resolve()}/state/results.db"
    assert settings.artifacts_url() == str(tmp_path.resolve() / "state" / "artifacts")
    assert settings.state_dir(create=True).is_dir()


def test_environment_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.STATE_DIR_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.delenv(settings.STORE_URL_ENV, raising=False)
    monkeypatch.setenv(settings.ARTIFACTS_URL_ENV, "memory://bucket/")
    assert settings.store_url() == f"sqlite:///{tmp_path}/elsewhere/results.db"
    assert settings.artifacts_url() == "memory://bucket"
    env = settings.offline_env()
    assert env["PREFECT_HOME"] == str(tmp_path / "elsewhere" / "prefect")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_UI_ENABLED"] == "false"
    assert env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "90"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["DVC_NO_ANALYTICS"] == "1"
    monkeypatch.setenv(settings.STORE_URL_ENV, "postgresql+psycopg://db/results")
    assert settings.store_url() == "postgresql+psycopg://db/results"


@pytest.mark.parametrize("root", ["local", "memory://itpn-test"])
def test_put_get_exists_with_hash(root: str, tmp_path: Path) -> None:
    base = str(tmp_path / "artifacts") if root == "local" else root
    source = tmp_path / "ckpt.pt"
    payload = bytes(range(256)) * 5000
    source.write_bytes(payload)
    url = artifacts.artifact_url("pretrain/run-1/ckpt.pt", root=base)
    assert url == f"{base}/pretrain/run-1/ckpt.pt"
    assert not artifacts.exists(url)
    stored = artifacts.put(source, url)
    assert artifacts.exists(url)
    assert stored.size_bytes == len(payload)
    assert stored.sha256 == artifacts.sha256(url)
    copy = artifacts.get(url, tmp_path / "back" / "ckpt.pt", expected_sha256=stored.sha256)
    assert copy.read_bytes() == payload
    small = artifacts.put_bytes(b"{}", artifacts.artifact_url("x/metrics.json", root=base))
    assert artifacts.sha256(small.url) == small.sha256


def test_changed_artifact_fails_its_hash_check(tmp_path: Path) -> None:
    url = artifacts.put_bytes(b"original", f"{tmp_path}/a/file.bin").url
    recorded = artifacts.sha256(url)
    Path(url).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="changed since it was recorded"):
        artifacts.get(url, tmp_path / "out.bin", expected_sha256=recorded)
    assert not (tmp_path / "out.bin").exists()


def test_artifact_keys_stay_under_the_root() -> None:
    with pytest.raises(ValueError, match="relative name"):
        artifacts.artifact_url("../escape", root="memory://r")
    with pytest.raises(ValueError, match="relative name"):
        artifacts.artifact_url("", root="memory://r")
