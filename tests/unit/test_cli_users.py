"""``bulwark user …`` and ``bulwark token …``: run as the real command (a child process with real stdin,
stdout and stderr), on a real data directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import users
from appliance.auth import sessions, tokens
from appliance.store import Store
from tests.unit.conftest import OPERATOR_PASSWORD, REPO, ApplianceDir

ENTRY_POINT = "import sys; from appliance.cli import main; sys.exit(main())"  # what the console script runs


def bulwark(where: ApplianceDir | Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    data_dir = where.paths.data_dir if isinstance(where, ApplianceDir) else where
    return subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )


@pytest.fixture
def db(appliance_dir: ApplianceDir) -> Iterator[Store]:
    store = appliance_dir.open_store()
    yield store
    store.close()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulwark: error: "), result.stderr
    return lines[0]


# --- users ---------------------------------------------------------------------------------------


def test_user_add_reads_the_password_from_stdin(appliance_dir: ApplianceDir, db: Store) -> None:
    result = bulwark(
        appliance_dir,
        "user",
        "add",
        "nora",
        "--role",
        "operator",
        "--password-stdin",
        stdin="nora's pass phrase\nignored\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "User nora (operator) added.\n"
    assert "pass phrase" not in result.stdout + result.stderr
    assert users.verify_password(db, "nora", "nora's pass phrase") is not None  # the first line, without its end
    nora = users.get_user(db, "nora")
    assert (nora.role, nora.must_change_password) == ("operator", False)
    row = db.query_one("SELECT actor, action, target, details FROM audit WHERE action = 'user.create'")
    assert row is not None and (row["actor"], row["target"]) == ("cli", "nora") and "pass" not in row["details"]


def test_user_add_takes_windows_line_ends(appliance_dir: ApplianceDir, db: Store) -> None:
    assert (
        bulwark(
            appliance_dir, "user", "add", "nora", "--role", "viewer", "--password-stdin", stdin="windows-password\r\n"
        ).returncode
        == 0
    )
    assert users.verify_password(db, "nora", "windows-password") is not None


@pytest.mark.parametrize(
    ("stdin", "message"),
    [("", "no password on stdin"), ("\n", "no password on stdin"), ("short\n", "at least 10 characters")],
)
def test_user_add_refuses_a_bad_password_on_stdin(
    appliance_dir: ApplianceDir, db: Store, stdin: str, message: str
) -> None:
    result = bulwark(appliance_dir, "user", "add", "nora", "--role", "viewer", "--password-stdin", stdin=stdin)
    assert result.returncode == 3  # invalid input
    assert message in one_error_line(result)
    assert result.stdout == ""
    assert [u.username for u in users.list_users(db)] == ["admin", "olivia", "victor"]


def test_user_add_with_a_one_time_password(appliance_dir: ApplianceDir, db: Store) -> None:
    result = bulwark(appliance_dir, "user", "add", "nora", "--role", "viewer")
    assert result.returncode == 0
    first, second = result.stdout.splitlines()
    assert first.startswith("User nora (viewer) added. One-time password: ")
    assert "shown only this once" in second
    password = first.rsplit(" ", 1)[1]
    assert users.verify_password(db, "nora", password) is not None
    assert users.get_user(db, "nora").must_change_password


def test_user_add_json(appliance_dir: ApplianceDir, db: Store) -> None:
    result = bulwark(appliance_dir, "user", "add", "nora", "--role", "viewer", "--json")
    body = json.loads(result.stdout)
    assert body["username"] == "nora" and body["role"] == "viewer" and body["must_change_password"] is True
    assert users.verify_password(db, "nora", body["one_time_password"]) is not None
    result = bulwark(
        appliance_dir,
        "user",
        "add",
        "paul",
        "--role",
        "viewer",
        "--json",
        "--password-stdin",
        stdin="paul-password-1\n",
    )
    assert json.loads(result.stdout)["one_time_password"] is None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["user", "add", "olivia", "--role", "viewer"], 5, "Already exists: user olivia"),
        (["user", "add", "Bad Name", "--role", "viewer"], 3, "a user name must start with a lowercase letter"),
        (["user", "remove", "nobody"], 4, "user nobody"),
        (["user", "remove", "admin"], 14, "admin is the last active admin"),
        (["user", "reset-password", "nobody"], 4, "user nobody"),
        (["token", "revoke", "999"], 4, "API token 999"),
        (["token", "create", "--role", "viewer", "--expires", "0"], 3, "expiry must be 1 to 3650 days"),
        (["token", "create", "--role", "viewer", "--name", "bad\nname"], 3, "a token name is"),
    ],
)
def test_errors_have_their_exit_status(
    appliance_dir: ApplianceDir, db: Store, args: list[str], code: int, message: str
) -> None:
    before = list(db.conn().iterdump())
    result = bulwark(appliance_dir, *args)
    assert result.returncode == code
    assert message in one_error_line(result)
    assert list(db.conn().iterdump()) == before


@pytest.mark.parametrize(
    "args",
    [
        ["user", "add", "nora"],  # no role
        ["user", "add", "nora", "--role", "root"],
        ["token", "create"],
        ["token", "revoke", "one"],
        ["user"],
        ["token", "delete", "1"],
    ],
)
def test_usage_errors_exit_2(appliance_dir: ApplianceDir, args: list[str]) -> None:
    result = bulwark(appliance_dir, *args)
    assert result.returncode == 2
    assert "usage: bulwark" in result.stderr and result.stdout == ""


def test_user_list(appliance_dir: ApplianceDir, db: Store) -> None:
    users.update_user(db, "victor", disabled=True)
    result = bulwark(appliance_dir, "user", "list")
    assert result.returncode == 0
    assert result.stdout == "admin\tadmin\nolivia\toperator\nvictor\tviewer\tdisabled\n"
    listed = json.loads(bulwark(appliance_dir, "user", "list", "--json").stdout)
    assert listed == [
        {"username": "admin", "role": "admin"},
        {"username": "olivia", "role": "operator"},
        {"username": "victor", "role": "viewer"},
    ]


def test_user_remove(appliance_dir: ApplianceDir, db: Store) -> None:
    result = bulwark(appliance_dir, "user", "remove", "victor")
    assert (result.returncode, result.stdout) == (0, "User victor removed.\n")
    assert [u.username for u in users.list_users(db)] == ["admin", "olivia"]


def test_user_reset_password_ends_sessions(appliance_dir: ApplianceDir, db: Store) -> None:
    olivia = users.get_user(db, "olivia")
    secret = sessions.create(db, olivia.id, address=None, remote=False, mfa_done=True)
    result = bulwark(appliance_dir, "user", "reset-password", "olivia")
    assert result.returncode == 0
    password = result.stdout.splitlines()[0].rsplit(" ", 1)[1]
    assert users.verify_password(db, "olivia", password) is not None
    assert users.verify_password(db, "olivia", OPERATOR_PASSWORD) is None
    assert users.get_user(db, "olivia").must_change_password
    assert sessions.lookup(db, secret) is None


# --- tokens --------------------------------------------------------------------------------------


def test_token_create_prints_the_token_once(appliance_dir: ApplianceDir, db: Store) -> None:
    result = bulwark(
        appliance_dir, "token", "create", "--role", "operator", "--name", "backup report", "--expires", "30"
    )
    assert result.returncode == 0
    secret = result.stdout.strip()
    assert result.stdout == secret + "\n"  # alone on stdout: TOKEN=$(bulwark token create …) works
    assert "shown only this once" in result.stderr and secret not in result.stderr
    found = tokens.authenticate(db, secret)
    assert found is not None and (found.name, found.role, found.created_by) == ("backup report", "operator", "cli")
    assert found.expires_at is not None
    listing = bulwark(appliance_dir, "token", "list")
    assert listing.stdout == f"{found.id}\tbackup report\toperator\tactive\n"
    as_json = bulwark(appliance_dir, "token", "list", "--json").stdout
    assert secret not in as_json and secret.split("_", 2)[2] not in as_json
    assert json.loads(as_json)[0]["active"] is True


def test_token_create_json(appliance_dir: ApplianceDir, db: Store) -> None:
    result = bulwark(appliance_dir, "token", "create", "--role", "viewer", "--json")
    body = json.loads(result.stdout)
    assert body["name"] == "api" and body["role"] == "viewer" and body["expires_at"] is None
    assert tokens.authenticate(db, body["secret"]) is not None


def test_token_revoke(appliance_dir: ApplianceDir, db: Store) -> None:
    token, secret = tokens.create(db, name="ci", role="admin", created_by="cli")
    result = bulwark(appliance_dir, "token", "revoke", str(token.id))
    assert (result.returncode, result.stdout) == (0, f"API token {token.id} revoked.\n")
    assert tokens.authenticate(db, secret) is None
    assert bulwark(appliance_dir, "token", "list").stdout == f"{token.id}\tci\tadmin\trevoked/expired\n"
    actions = [r["action"] for r in db.query("SELECT action FROM audit WHERE actor = 'cli' ORDER BY id")]
    assert actions == ["token.revoke"]


def test_commands_need_an_initialized_data_dir(tmp_path: Path) -> None:
    for args in (["user", "list"], ["token", "create", "--role", "viewer"], ["user", "add", "x", "--role", "viewer"]):
        result = bulwark(tmp_path / "never-initialized", *args)
        assert result.returncode == 13
        one_error_line(result)
        assert not (tmp_path / "never-initialized").exists()
