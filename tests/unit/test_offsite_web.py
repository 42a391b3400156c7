"""The Offsite page and ``/api/v1/offsite``: the key with its recovery-kit step, targets, policies, per-client state
with backlog and ETA, run and verify as jobs; every API answer checked against the published OpenAPI document, and
bad input changing nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.jobs import queue
from appliance.offsite import keys, kit
from appliance.store import Store
from tests.alert_web_helpers import add_client_row
from tests.unit.api_fixtures import response_validator
from tests.unit.web import Web, dump, text

API = "/api/v1"
PASS = "correct horse battery staple"


@pytest.fixture
def admin(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("admin")


@pytest.fixture
def operator(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("operator")


def checked(web: Web, method: str, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
    headers = {"X-CSRF-Token": web.csrf()} if method != "GET" else {}
    response = web.api(method, f"{API}{path}", json=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    document = web.get(f"{API}/openapi.json").json
    template = path if "/run" not in path and "/verify" not in path else path.replace("/acme/", "/{client}/")
    errors = list(response_validator(document, f"{API}{template}", method, status).iter_errors(response.json))
    assert errors == [], errors
    return response.json


def form(web: Web, path: str, data: dict[str, str]) -> Any:
    return web.post(path, {**data, "csrf_token": web.csrf()})


def test_page_walks_through_key_and_kit_then_targets(admin: Web, db: Store, tmp_path: Path) -> None:
    page = text(admin.get("/offsite/"))
    assert "<h1>Offsite</h1>" in page and "Step 1 of 2: create the data key" in page
    response = form(admin, "/offsite/key", {"passphrase": PASS, "confirm": PASS + "x"})
    assert "the+two+passphrases+differ" in response.headers["Location"] and keys.list_keys(db) == []
    form(admin, "/offsite/key", {"passphrase": PASS, "confirm": PASS})
    page = text(admin.get("/offsite/"))
    assert "Step 2 of 2: download your recovery kit" in page
    download = form(admin, "/offsite/kit", {})
    assert download.headers["Content-Disposition"].startswith('attachment; filename="bulwark-recovery-kit-')
    document = kit.parse(download.get_data(as_text=True))
    assert keys.keys_from_kit(document, PASS).keys() == keys.all_keys(db, admin_paths(db)).keys()
    assert "Step 2 of 2" not in text(admin.get("/offsite/"))

    usb = tmp_path / "usb"
    usb.mkdir()
    before = dump(db)
    bad = form(admin, "/offsite/targets", {"name": "usb\nx", "type": "local", "path": str(usb)})
    assert "error=" in bad.headers["Location"] and dump(db) == before
    form(admin, "/offsite/targets", {"name": "usb", "type": "local", "path": str(usb), "keep_chains": "3"})
    add_client_row(db, "acme")
    form(admin, "/offsite/policy", {"client": "acme", "target": "usb", "enabled": "on", "interval": "6h",
                                    "bandwidth": "weekdays 08:00-18:00=2048"})  # fmt: skip
    with db.write() as tx:
        tx.execute("INSERT INTO offsite_backlog_samples VALUES ('acme', 'usb', ?, 50000000)", (time.time() - 3600,))
        tx.execute("INSERT INTO offsite_backlog_samples VALUES ('acme', 'usb', ?, 20000000)", (time.time(),))
    page = text(admin.get("/offsite/"))
    assert "acme" in page and "→ usb" in page and "every 6" in page and "not verified yet" in page
    assert "<svg" in page and "waiting now" in page
    form(admin, "/offsite/acme/run", {"target": "usb"})
    (job,) = queue.list_jobs(db, kind="offsite.replicate")
    assert job.params == {"client": "acme", "target": "usb", "created_by": "user:admin"}
    assert 'hx-trigger="every 2s"' in text(admin.get("/offsite/"))  # polls while the job runs


def admin_paths(db: Store) -> Any:
    from appliance.system.paths import Paths

    return Paths(db.path.parent)


def test_operator_runs_but_does_not_manage(operator: Web, db: Store) -> None:
    page = text(operator.get("/offsite/"))
    assert "An administrator creates the key." in page and "Add a target" not in page
    before = dump(db)
    assert form(operator, "/offsite/key", {"passphrase": PASS, "confirm": PASS}).status_code == 403
    assert dump(db) == before


def test_api(admin: Web, db: Store, tmp_path: Path) -> None:
    status = checked(admin, "GET", "/offsite")
    assert status == {"keys": [], "kit_exported": False, "targets": [], "clients": []}
    short = admin.api(
        "POST", f"{API}/offsite/keys", json={"passphrase": "short"}, headers={"X-CSRF-Token": admin.csrf()}
    )
    assert short.status_code == 400 and "12 characters" in short.json["error"]["message"]
    key = checked(admin, "POST", "/offsite/keys", {"passphrase": PASS})
    assert key["active"] is True
    checked(admin, "POST", "/offsite/keys", {"passphrase": PASS}, status=409)
    rotated = checked(admin, "POST", "/offsite/keys/rotate", {"passphrase": PASS})
    assert rotated["id"] != key["id"]
    got = checked(admin, "POST", "/offsite/kit")
    assert set(got["keys"]) == {key["id"], rotated["id"]} and "BEGIN BULWARK OFFSITE KIT" in got["kit"]
    (tmp_path / "usb").mkdir()
    target = checked(admin, "POST", "/offsite/targets", {"name": "usb", "type": "local", "path": str(tmp_path / "usb")})
    assert target["where"] == str(tmp_path / "usb")
    checked(admin, "POST", "/offsite/targets", {"name": "usb", "type": "local", "path": "/x"}, status=409)
    checked(admin, "POST", "/offsite/targets", {"name": "s3", "type": "s3", "bucket": "b-1"}, status=400)
    add_client_row(db, "acme")
    body = {"client": "acme", "target": "usb", "enabled": True, "interval_s": 3600, "bandwidth": ["08:00-18:00=100"]}
    policy = checked(admin, "PATCH", "/offsite/policies", body)
    assert policy["enabled"] and policy["bandwidth"] == ["daily 08:00-18:00=100"]
    checked(admin, "PATCH", "/offsite/policies", {"client": "acme", "target": "usb", "bandwidth": ["nonsense"]}, 400)
    job = checked(admin, "POST", "/offsite/acme/run", {"target": "usb"})["job"]
    assert queue.get(db, job).kind == "offsite.replicate"
    checked(admin, "POST", "/offsite/acme/verify", {"target": "nope"}, status=404)
    status = checked(admin, "GET", "/offsite")
    (row,) = status["clients"]
    assert row["client"] == "acme" and row["job"]["id"] == job and status["kit_exported"] is True
    checked(admin, "POST", "/offsite/targets/remove", {"name": "usb"})
    checked(admin, "POST", "/offsite/targets/remove", {"name": "usb"}, status=404)
