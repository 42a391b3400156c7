"""The Disks page and /api/v1/disks on this machine's real block devices, with SMART answered by the replaying
``smartctl`` (recorded outputs of real drives): inventory, verdict badges with reasons, the detail page with
trend charts, reading SMART now, self-tests, and bad input refused with nothing changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.disks import bays, inventory, polling
from appliance.jobs import base, queue
from appliance.store import Store
from appliance.system.errors import InvalidInput
from tests.unit.api_fixtures import response_validator
from tests.unit.disks.conftest import Replay
from tests.unit.web import Web, dump, text

API = "/api/v1"
REAL = [d.name for d in inventory.scan() if d.kind != "loop"]
pytestmark = pytest.mark.skipif(not REAL, reason="no block device other than loop devices on this machine")


def checked(web: Web, method: str, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
    headers = {"X-CSRF-Token": web.csrf()} if method != "GET" else {}
    response = web.api(method, f"{API}{path}", json=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    document: dict[str, Any] = web.get(f"{API}/openapi.json").json or {}
    parts = path.split("?")[0].split("/")
    if len(parts) > 2 and parts[1] == "disks":
        parts[2] = "{disk}"
    path_template = API + "/".join(parts)
    errors = list(response_validator(document, path_template, method, status).iter_errors(response.json))
    assert errors == [], errors
    return response.json


@pytest.fixture
def admin(signed_in: Callable[[str], Web]) -> Web:
    return signed_in("admin")


def test_inventory_and_failing_disk(admin: Web, db: Store, replay: Replay) -> None:
    disk = REAL[0]
    listed = checked(admin, "GET", "/disks")["disks"]
    row = next(d for d in listed if d["name"] == disk)
    assert row["smart"]["verdict"] == "unknown" and "not read yet" in row["smart"]["reasons"][0]
    assert all(d["smart"] is None for d in listed if d["kind"] == "loop")
    replay("ata_hitachi_hds721050dle630_failing.json")
    detail = checked(admin, "POST", f"/disks/{disk}/smart")
    assert detail["disk"]["smart"]["verdict"] == "failing"
    assert any(a["id"] == 5 and a["raw"] == 1975 for a in detail["attributes"])
    assert len(detail["samples"]) == 1 and detail["samples"][0]["counters"]["5"] == 1975
    replay("ata_hitachi_hds721050dle630_failing.json")
    checked(admin, "POST", f"/disks/{disk}/smart")  # a second reading: the trend has two points
    page = text(admin.get("/disks/"))
    assert f'id="disk-{disk}"' in page and "verdict-failing" in page and "self-assessment is FAILED" in page
    detail_page = text(admin.get(f"/disks/{disk}"))
    assert 'id="trend-temperature"' in detail_page and 'id="trend-5"' in detail_page and "<svg" in detail_page
    assert "Reallocated_Sector_Ct" in detail_page and "Completed: read failure" in detail_page


def test_self_test_through_api_and_page(admin: Web, db: Store, replay: Replay) -> None:
    disk = REAL[0]
    log = replay("ata_wdc_wd140edfz_healthy.json")
    assert checked(admin, "POST", f"/disks/{disk}/selftest", {"kind": "short"}) == {"started": True, "error": None}
    assert log.read_text().split() == ["-j", "-t", "short", f"/dev/{disk}"]
    response = admin.post(f"/disks/{disk}/test", data={"kind": "long"})  # the page's button: a job
    assert response.status_code == 302
    [job] = queue.list_jobs(db, kind="disk.selftest")
    assert response.headers["Location"].endswith(f"/jobs/{job.id}")
    assert (job.params, job.created_by) == ({"device": f"/dev/{disk}", "kind": "long"}, "user:admin")
    with pytest.raises(InvalidInput):  # a job kind with strict parameters
        base.submit(db, "disk.selftest", {"device": f"/dev/{disk}", "kind": "offline"}, created_by="x")
    assert admin.post(f"/disks/{disk}/test", data={"kind": "offline"}).status_code == 400
    kinds = [r["kind"] for r in db.query("SELECT kind FROM disk_selftests ORDER BY id")]
    assert kinds == ["short"]  # the job starts the long one when bulwarkd runs it


def test_bad_input_changes_nothing(admin: Web, db: Store, replay: Replay) -> None:
    log = replay("ata_wdc_wd140edfz_healthy.json")
    before = dump(db)
    checked(admin, "POST", f"/disks/{REAL[0]}/selftest", {"kind": "offline"}, status=400)
    checked(admin, "POST", "/disks/nosuchdisk0/selftest", {"kind": "short"}, status=404)
    assert admin.api("GET", f"{API}/disks/a%0Ab").status_code == 400
    assert admin.api("GET", f"{API}/disks/nosuchdisk0").status_code == 404
    loops = [d.name for d in inventory.scan() if d.kind == "loop"]
    if loops:
        checked(admin, "POST", f"/disks/{loops[0]}/smart", status=400)
    assert dump(db) == before and not log.exists()


def test_viewer_cannot_start_tests(signed_in: Callable[[str], Web], replay: Replay) -> None:
    viewer = signed_in("viewer")
    log = replay("ata_wdc_wd140edfz_healthy.json")
    response = viewer.api("POST", f"{API}/disks/{REAL[0]}/selftest", json={"kind": "short"},
                          headers={"X-CSRF-Token": viewer.csrf()})  # fmt: skip
    assert response.status_code == 403 and not log.exists()
    assert "Short self-test" not in text(viewer.get(f"/disks/{REAL[0]}"))
    assert polling.latest is not None


def test_disks_in_their_bays_when_a_profile_matches(
    admin: Web, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = text(admin.get("/disks/"))
    assert 'id="bays"' not in page  # no profile for this machine: the list only
    dmi, hardware = tmp_path / "dmi", tmp_path / "hardware"
    dmi.mkdir()
    hardware.mkdir()
    (dmi / "sys_vendor").write_text("Acme\n")
    (dmi / "product_name").write_text("Vault 4\n")
    disk = next(d for d in inventory.scan() if d.kind != "loop")
    links = [link.rsplit("/", 1)[-1] for link in disk.by_path] or ["pci-0000:00:1f.2-ata-1"]
    profile = {
        "name": "Acme Vault 4",
        "match": {"sys_vendor": ["Acme"], "product_name": ["Vault 4"]},
        "columns": 2,
        "bays": [{"label": "Bay A", "slot": 0, "by_path": links[0]}, {"label": "Bay B", "slot": 1, "by_path": "none"}],
    }
    (hardware / "acme-vault-4.json").write_text(json.dumps(profile))
    monkeypatch.setattr(bays, "DMI_DIR", dmi)
    monkeypatch.setattr(bays, "HARDWARE_DIR", hardware)
    page = text(admin.get("/disks/"))
    assert 'id="bays"' in page and "Acme Vault 4" in page and "Bay A" in page and "Bay B" in page
    bay_b = page.split('id="bay-2"', 1)[1].split("</div>", 1)[0]
    assert "empty" in bay_b
    bay_a = page.split('id="bay-1"', 1)[1].split("</div>", 1)[0]
    if disk.by_path:  # udev gives by-path links where udevd runs; then the disk sits in its bay
        assert f">{disk.name}</a>" in bay_a
    else:
        assert "empty" in bay_a and disk.name in page.split("Not in a bay:", 1)[1]
