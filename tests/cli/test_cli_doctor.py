"""``itpn doctor``: reports what the environment has and fails, naming the fix, when the demo can't run."""
import sys

from typer.testing import CliRunner

from itpn_cli.main import app

runner = CliRunner()


def invoke(monkeypatch, tmp_path, **env):
    monkeypatch.setenv("ITPN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ITPN_STORE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "250")
    return runner.invoke(app, ["doctor"])


def test_a_missing_openmmlab_stack_fails_and_names_the_install_script(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mmcv.ops", None)  # what an environment without mmcv's ops imports
    result = invoke(monkeypatch, tmp_path)
    assert result.exit_code == 1, result.output
    assert "install_openmmlab.sh" in result.output
    assert "mmcv" in result.output.split("missing or broken:")[1]


def test_an_unreachable_store_fails_and_names_the_url(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mmcv.ops", None)
    result = invoke(monkeypatch, tmp_path, ITPN_STORE_URL="postgresql+psycopg://nobody@127.0.0.1:9/none")
    assert result.exit_code == 1
    failed = result.output.split("missing or broken:")[1]
    assert "results store" in failed and "127.0.0.1:9" in result.output


def test_a_fresh_state_directory_is_reported_as_created_on_first_run(monkeypatch, tmp_path):
    from itpn_cli.doctor import OK, check_state_dir, check_store

    monkeypatch.setenv("ITPN_STATE_DIR", str(tmp_path / "new-state"))
    monkeypatch.delenv("ITPN_STORE_URL", raising=False)
    store, state = check_store(), check_state_dir()
    assert (store.status, state.status) == (OK, OK)
    assert "not created yet" in store.detail and "created on first run" in state.detail
    assert not (tmp_path / "new-state").exists()  # the doctor only looks


def test_a_store_behind_the_code_says_to_upgrade(monkeypatch, tmp_path):
    import sqlite3

    from itpn_cli.doctor import WARN, check_store

    database = tmp_path / "old.db"
    sqlite3.connect(database).close()  # exists, never migrated
    monkeypatch.setenv("ITPN_STORE_URL", f"sqlite:///{database}")
    check = check_store()
    assert check.status == WARN and "never migrated" in check.detail and check.fix == "itpn store upgrade"
