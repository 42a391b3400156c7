"""The client pages of the web UI on a real zfs-fuse pool: the list, adding a client, its page (settings,
timeline, points table, retention preview, pruning, taking points), pin/unpin/destroy, remove/reattach/destroy
data, browsing a point, downloading a file and a zip, restoring into live data, and the dashboard's RPO table
and alerts. Jobs are run by a worker in the test's thread, as bulwarkd would run them. The API is tested in
test_client_api.py."""

from __future__ import annotations

import datetime
import io
import os
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from appliance import alerts
from appliance.clients import browse, points, rpo, service
from appliance.jobs import queue
from appliance.zfs import datasets
from tests.clients_fixtures import LocalPool
from tests.web_helpers import Browser, Site, close_site, open_site, text

pytestmark = pytest.mark.zfs


@pytest.fixture
def site(local_pool: LocalPool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("BULWARK_TESTONLY_WEAK_KDF", "1")
    made = open_site(tmp_path, local_pool.name, local_pool.mountpoint)
    try:
        yield made
    finally:
        close_site(made)


def fill(root: Path) -> None:
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "docs" / "report.txt").write_bytes(b"report v1")
    (root / "docs" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 4096)
    (root / "readme.txt").write_text("top level\n")
    os.symlink("/etc", root / "docs" / "escape")


def take_point(site: Site, web: Browser, name: str) -> points.RecoveryPoint:
    response = web.post(f"/clients/{name}/snapshot")
    assert response.status_code == 302 and re.fullmatch(r"/jobs/\d+", response.headers["Location"])
    [job] = site.run_jobs()
    assert job.state == "succeeded", job.error
    page = text(web.get(response.headers["Location"]))
    assert "succeeded" in page
    return points.list_points(site.db, site.zfs, name)[0]


def snapshot_names(site: Site) -> list[str]:
    return sorted(n for n in datasets.list_names(site.zfs, site.pool, kinds="snapshot"))


def test_list_add_and_show(site: Site) -> None:
    admin = site.browser("admin")
    page = text(admin.get("/clients/"))
    assert 'id="no-clients"' in page and "Add a client" in page
    response = admin.post(
        "/clients/",
        {"name": "acme-fs1", "kind": "smb", "quota": "1G", "rpo": "2h", "schedule": "every 1h", "window": "",
         "retention": "last=5,daily=3", "lock": "0", "notes": "rack 4"},
    )  # fmt: skip
    assert response.status_code == 302 and response.headers["Location"] == "/clients/acme-fs1"
    page = text(admin.get("/clients/acme-fs1"))
    assert "Client acme-fs1 added." in page and "No recovery points yet." in page
    assert 'value="last=5,daily=3"' in page and 'value="1G"' in page and 'value="2h"' in page
    assert datasets.get_dataset(site.zfs, f"{site.pool}/clients/acme-fs1").quota == 1024**3
    page = text(admin.get("/clients/"))
    row = page.split('href="/clients/acme-fs1"')[1].split("</tr>")[0]
    assert "smb" in row and "of 1.0 GiB" in row and "none yet" in row
    assert '<span class="badge warn"' in row and "no point yet" in row  # amber until the first point
    assert "(every 1h)" in row  # the next scheduled run
    assert 'aria-current="page">Clients</a>' in page


@pytest.mark.parametrize(
    ("field", "value", "status", "message"),
    [
        ("name", "Bad_Name", 400, "client name &#39;Bad_Name&#39; must be"),
        ("name", "global", 400, "is reserved"),
        ("retention", "minutely=3", 400, "unknown rule"),
        ("retention", "last=0", 400, "keeps nothing"),
        ("quota", "1M", 400, "at least 64 MiB"),
        ("rpo", "soon", 400, "RPO target"),
        ("schedule", "every 1m", 400, "at least 5 minutes"),
        ("window", "25:00-26:00", 400, "window"),
        ("notes", "bell\x07", 400, "control characters"),
        ("kind", "tape", 400, "client kind"),
    ],
)
def test_add_refuses_bad_input_and_changes_nothing(
    site: Site, field: str, value: str, status: int, message: str
) -> None:
    admin = site.browser("admin")
    form = {"name": "acme", "kind": "smb", "quota": "none", "rpo": "1d", "schedule": "off", "retention": "last=3"}
    response = admin.post("/clients/", {**form, field: value})
    assert response.status_code == status
    page = text(response)
    assert message in page and 'class="flash error"' in page and "What to do:" in page
    assert service.list_clients(site.db, include_removed=True) == []
    assert not datasets.exists(site.zfs, f"{site.pool}/clients/acme")


def test_add_refuses_a_taken_name(site: Site) -> None:
    site.add("acme")
    response = site.browser("admin").post("/clients/", {"name": "acme", "kind": "agent"})
    assert response.status_code == 409 and "Client acme already exists" in text(response)
    assert service.get_client(site.db, "acme").kind == "smb"


def test_settings_edit_and_refusal(site: Site) -> None:
    site.add("acme", quota="1G")
    admin = site.browser("admin")
    form = {"kind": "smb", "quota": "2G", "rpo": "6h", "schedule": "0 */4 * * *", "window": "mon-fri 20:00-06:00",
            "retention": "last=10,daily=7", "lock": "1d", "notes": "moved\r\nto rack 5"}  # fmt: skip
    response = admin.post("/clients/acme/settings", form)
    assert response.status_code == 302
    client = service.get_client(site.db, "acme")
    s = client.settings
    assert (s.quota, s.rpo, s.schedule, s.retention, s.lock) == (
        2 * 1024**3,
        6 * 3600,
        "0 */4 * * *",
        "last=10,daily=7",
        86400,
    )
    assert s.window == "mon,tue,wed,thu,fri 20:00-06:00" and s.notes == "moved\nto rack 5"
    assert "Settings saved." in text(admin.get("/clients/acme"))
    before = service.get_client(site.db, "acme")
    response = admin.post("/clients/acme/settings", {**form, "quota": "none", "retention": "last=2,last=3"})
    assert response.status_code == 400
    page = text(response)
    assert (
        "rule &#39;last&#39; is given twice" in page and 'value="last=2,last=3"' in page
    )  # the form keeps what was typed
    assert service.get_client(site.db, "acme") == before
    assert datasets.get_dataset(site.zfs, client.dataset).quota == 2 * 1024**3


def test_points_timeline_pin_and_destroy(site: Site) -> None:
    site.add("acme")
    fill(site.live("acme"))
    admin = site.browser("admin")
    first = take_point(site, admin, "acme")
    (site.live("acme") / "readme.txt").write_text("changed\n")
    time.sleep(1.1)  # a new second: a distinct snapshot name
    second = take_point(site, admin, "acme")
    page = text(admin.get("/clients/acme"))
    svg = page.split('<figure class="chart timeline"')[1].split("</figure>")[0]
    assert svg.count('<a href="#point-') == 2 and 'fill="#7b3fa0"' in svg  # two manual points, in purple
    assert "2 recovery points from" in svg and "taken by hand" in svg
    assert f'id="point-0" data-point="{second.id}"' in page and f'id="point-1" data-point="{first.id}"' in page
    shown = datetime.datetime.fromtimestamp(second.created_at, ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S")
    assert shown in page and "times in Europe/Berlin" in page
    assert '<span class="badge ok"' in page.split('id="protection"')[1].split("</article>")[0]

    assert admin.post("/clients/acme/points/pin", {"point": first.id}).status_code == 302
    assert points.get_point(site.db, site.zfs, "acme", first.id).pinned
    page = text(admin.get("/clients/acme"))
    assert "pinned: retention keeps it" in page and 'r="9.5"' in page  # the pin ring on the timeline
    response = admin.post("/clients/acme/points/destroy", {"point": first.id})
    assert response.status_code == 409
    page = text(response)
    assert f"Recovery point {first.id} is pinned and cannot be destroyed." in page
    assert "Unpin it first if it really is no longer needed." in page
    assert first.snapshot in snapshot_names(site)

    operator = site.browser("operator")
    assert operator.post("/clients/acme/points/destroy", {"point": second.id}).status_code == 403
    assert operator.post("/clients/acme/points/unpin", {"point": first.id}).status_code == 302
    assert admin.post("/clients/acme/points/destroy", {"point": first.id}).status_code == 302
    assert first.snapshot not in snapshot_names(site) and second.snapshot in snapshot_names(site)
    for bad in ("share@nothing", "../../etc", ""):
        response = admin.post("/clients/acme/points/pin", {"point": bad})
        assert response.status_code in (400, 404) and 'class="flash error"' in text(response)


def test_locked_point_cannot_be_destroyed(site: Site) -> None:
    site.add("acme", lock="1d")
    admin = site.browser("admin")
    point = take_point(site, admin, "acme")
    page = text(admin.get("/clients/acme"))
    assert '<rect x="' in page.split('class="chart timeline"')[1]  # the lock mark
    response = admin.post("/clients/acme/points/destroy", {"point": point.id})
    assert response.status_code == 409
    assert "is locked until" in text(response) and "Immutability locks cannot be shortened" in text(response)


def test_retention_preview_and_prune(site: Site) -> None:
    site.add("acme", retention_spec="last=3")
    admin = site.browser("admin")
    for _ in range(5):
        take_point(site, admin, "acme")
        time.sleep(1.05)
    page = text(admin.get("/clients/acme"))
    assert "these 2 of 5 points of acme will be removed" in page
    page = text(admin.get("/clients/acme/prune-plan?spec=last%3D1"))
    assert "With <code>last=1</code>: these 4 of 5 points of acme will be removed" in page
    assert "<h1>Retention preview</h1>" in page
    partial = admin.get(
        "/clients/acme/prune-plan?spec=last%3D4", headers={"HX-Request": "true", "HX-Target": "prune-preview"}
    )
    assert partial.status_code == 200 and "<html" not in text(partial)
    assert "this 1 of 5 points of acme will be removed" in text(partial)
    response = admin.get("/clients/acme/prune-plan?spec=weekly%3Dx")
    assert response.status_code == 400 and "Invalid retention SPEC" in text(response)
    partial = admin.get("/clients/acme/prune-plan?spec=last%3D0", headers={"HX-Request": "true", "HX-Target": "x"})
    assert partial.status_code == 200 and "keeps nothing" in text(partial)  # htmx swaps only 2xx answers
    assert service.get_client(site.db, "acme").settings.retention == "last=3"  # a preview saves nothing
    assert len(points.list_points(site.db, site.zfs, "acme")) == 5

    assert site.browser("viewer").post("/clients/acme/prune").status_code == 403
    response = site.browser("operator").post("/clients/acme/prune")
    assert response.status_code == 302
    [job] = site.run_jobs()
    assert job.state == "succeeded" and len(job.result["destroyed"]) == 2
    assert len(points.list_points(site.db, site.zfs, "acme")) == 3
    assert "all 3 points of acme will be kept" in text(admin.get("/clients/acme"))


def test_viewer_reads_but_changes_nothing(site: Site) -> None:
    site.add("acme")
    admin = site.browser("admin")
    point = take_point(site, admin, "acme")
    viewer = site.browser("viewer")
    page = text(viewer.get("/clients/acme"))
    assert "Take recovery point now" not in page and 'data-action="pin"' not in page and "Browse</button>" not in page
    assert "<fieldset disabled>" in page and "Only admins and operators" in page
    assert "Add a client" not in text(viewer.get("/clients/"))
    for path, data in [
        ("/clients/", {"name": "other", "kind": "smb"}),
        ("/clients/acme/settings", {"kind": "both"}),
        ("/clients/acme/snapshot", {}),
        ("/clients/acme/prune", {}),
        ("/clients/acme/points/pin", {"point": point.id}),
        ("/clients/acme/points/destroy", {"point": point.id}),
        ("/clients/acme/remove", {}),
        ("/clients/acme/browse/", {"point": point.id}),
    ]:
        response = viewer.post(path, data)
        assert response.status_code == 403 and "Your role (viewer) does not allow this." in text(response), path
    assert queue.list_jobs(site.db, kind="client.snapshot") and len(queue.list_jobs(site.db)) == 1
    assert [c.name for c in service.list_clients(site.db)] == ["acme"] and not point.pinned
    assert service.get_client(site.db, "acme").kind == "smb" and browse.list_sessions(site.db) == []


def test_remove_reattach_and_destroy_with_typed_confirmation(site: Site) -> None:
    site.add("acme")
    admin, operator = site.browser("admin"), site.browser("operator")
    take_point(site, admin, "acme")
    dataset = f"{site.pool}/clients/acme"
    assert operator.post("/clients/acme/remove").status_code == 302
    assert not service.get_client(site.db, "acme").active and datasets.exists(site.zfs, dataset)
    page = text(admin.get("/clients/"))
    assert "Removed clients (data kept)" in page and "Reattach</button>" in page
    page = text(admin.get("/clients/acme"))
    assert "This client is removed" in page and "Take recovery point now" not in page and "Destroy its data" in page
    assert operator.post("/clients/acme/destroy", {"confirm": "acme"}).status_code == 403
    response = admin.post("/clients/acme/destroy", {"confirm": "acme-"})
    assert response.status_code == 400 and "needs the confirmation" in text(response)
    assert datasets.exists(site.zfs, dataset)
    assert operator.post("/clients/acme/reattach").status_code == 302
    assert service.get_client(site.db, "acme").active
    response = admin.post("/clients/acme/destroy", {"confirm": "acme"})
    assert response.status_code == 409 and "remove it first" in text(response)
    assert admin.post("/clients/acme/remove").status_code == 302
    response = admin.post("/clients/acme/destroy", {"confirm": "acme"})
    assert response.status_code == 302 and response.headers["Location"] == "/clients/"
    assert not datasets.exists(site.zfs, dataset) and service.list_clients(site.db, include_removed=True) == []
    assert "The data of client acme and all its recovery points were destroyed." in text(admin.get("/clients/"))
    assert admin.get("/clients/acme").status_code == 404


def test_browse_download_and_restore(site: Site) -> None:
    site.add("acme")
    live = site.live("acme")
    fill(live)
    operator = site.browser("operator")
    point = take_point(site, operator, "acme")
    (live / "docs" / "report.txt").write_bytes(b"report v2, newer")  # newer than the point: kept
    os.utime(live / "docs" / "report.txt", (time.time() + 60, time.time() + 60))
    (live / "docs" / "sub" / "data.bin").unlink()  # lost: comes back
    (live / "readme.txt").write_text("edited\n")
    os.utime(live / "readme.txt", (time.time() - 86400 * 30, time.time() - 86400 * 30))  # older: replaced

    response = operator.post("/clients/acme/browse/", {"point": point.id})
    assert response.status_code == 302
    page_url = response.headers["Location"]
    sid = page_url.rsplit("/", 1)[1]
    assert len(site.clones()) == 1
    page = text(operator.get(page_url))
    assert 'class="folder">docs/</a>' in page and "readme.txt" in page and f"Recovery point {point.snapname}" in page
    page = text(operator.get(f"{page_url}?path=docs"))
    assert 'aria-current="page">docs</li>' in page and "escape" in page and "(link, kept as a link)" in page
    assert 'value="docs"' in page  # the restore target defaults to this folder

    got = operator.get(f"{page_url}/file?path=docs/sub/data.bin")
    assert got.status_code == 200 and got.is_streamed and got.mimetype == "application/octet-stream"
    assert got.data == bytes(range(256)) * 4096 and got.headers["Content-Length"] == str(256 * 4096)
    assert got.headers["Content-Disposition"] == "attachment; filename=\"data.bin\"; filename*=UTF-8''data.bin"
    zipped = operator.post(f"{page_url}/zip", {"paths": ["docs", "readme.txt"], "folder": ""})
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip" and "Content-Length" not in zipped.headers
    assert f"acme-{point.snapname}.zip" in zipped.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(zipped.data)) as archive:
        assert archive.read("readme.txt") == b"top level\n" and archive.read("docs/report.txt") == b"report v1"
        assert archive.read("docs/sub/data.bin") == bytes(range(256)) * 4096
        assert archive.read("docs/escape") == b"/etc"  # a link stays a link
    whole = operator.post(f"{page_url}/zip", {"paths": [""], "compress": "on"})
    with zipfile.ZipFile(io.BytesIO(whole.data)) as archive:
        assert {"readme.txt", "docs/report.txt"} <= set(archive.namelist())
        assert archive.getinfo("readme.txt").compress_type == zipfile.ZIP_DEFLATED

    for hostile in ("../../../etc/passwd", "/etc/passwd", "docs/escape/passwd", "docs/../../x"):
        response = operator.get(f"{page_url}/file?path={quote(hostile)}")
        assert response.status_code == 400, hostile
        assert "is not allowed" in text(response) and "What to do:" in text(response)
        response = operator.post(f"{page_url}/zip", {"paths": [hostile]})
        assert response.status_code == 400 and "is not allowed" in text(response), hostile
        response = operator.get(f"{page_url}?path={quote(hostile)}")
        assert response.status_code == 400 and "is not allowed" in text(response), hostile
    response = operator.post(f"{page_url}/restore", {"paths": ["../x"], "target": ""})
    assert response.status_code == 400 and "is not allowed" in text(response)
    response = operator.post(f"{page_url}/restore", {"paths": ["docs"], "target": "../outside"})
    assert response.status_code == 400 and "is not allowed" in text(response)
    assert operator.post(f"{page_url}/zip", {"folder": ""}).status_code == 400  # nothing selected
    assert operator.get(f"{page_url}/file?path=docs/nothing").status_code == 404
    assert queue.list_jobs(site.db, kind="client.restore") == []

    response = operator.post(f"{page_url}/restore", {"paths": ["docs", "readme.txt"], "target": "", "folder": ""})
    assert response.status_code == 302 and response.headers["Location"].startswith("/jobs/")
    [job] = site.run_jobs()
    assert job.state == "succeeded", job.error
    assert (live / "docs" / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 4096
    assert (live / "docs" / "report.txt").read_bytes() == b"report v2, newer"
    assert (live / "readme.txt").read_text() == "top level\n"
    assert job.result["skipped_newer"] == 1 and job.result["copied"] >= 2
    page = text(operator.get(response.headers["Location"]))
    assert "succeeded" in page and "client.restore" in page

    response = operator.post(f"{page_url}/restore", {"paths": ["docs/report.txt"], "target": "docs", "overwrite": "on"})
    assert response.status_code == 302
    [job] = site.run_jobs()
    assert job.state == "succeeded" and (live / "docs" / "report.txt").read_bytes() == b"report v1"

    admin = site.browser("admin")  # someone else's session does not exist for them
    assert admin.get(page_url).status_code == 404
    assert admin.get(f"{page_url}/file?path=readme.txt").status_code == 404
    assert admin.post(f"{page_url}/close").status_code == 404
    response = operator.post(f"{page_url}/close")
    assert response.status_code == 302 and site.clones() == [] and browse.list_sessions(site.db) == []
    assert operator.get(page_url).status_code == 404
    assert sid not in text(operator.get("/clients/acme"))


def test_dashboard_rpo_table_and_alerts(site: Site) -> None:
    admin = site.browser("admin")
    page = text(admin.get("/"))
    assert "No clients are protected yet." in page and "No active alerts." in page
    for name in ("fresh", "new", "stale"):
        site.add(name, rpo="1h")
    take_point(site, admin, "fresh")
    old = time.time() - 3 * 3600
    site.db.conn().execute("UPDATE clients SET created_at = ? WHERE name = 'stale'", (old,))
    rpo.check_all(site.db, site.zfs)
    page = text(admin.get("/"))
    card = page.split('id="rpo-card"')[1].split("</article>")[0]
    rows = {
        m[0]: m[1]
        for m in re.findall(r'href="/clients/([a-z-]+)">[a-z-]+</a></td>\s*<td><span class="badge (\w*)"', card)
    }
    assert rows == {"fresh": "ok", "new": "warn", "stale": "bad"}
    alerts_card = page.split('id="alerts-card"')[1].split("</article>")[0]
    assert "client stale has no good recovery point yet (RPO target 1h)" in alerts_card
    assert "warning" in alerts_card
    assert [a.key for a in alerts.list_alerts(site.db)] == ["rpo:stale"]
    page = text(site.browser("viewer").get("/clients/"))
    assert page.count('<span class="badge bad"') == 1 and page.count('<span class="badge ok"') == 1


def test_every_form_needs_the_csrf_token(site: Site) -> None:
    site.add("acme")
    admin = site.browser("admin")
    point = take_point(site, admin, "acme")
    opened = admin.post("/clients/acme/browse/", {"point": point.id}).headers["Location"]
    before = list(site.db.conn().iterdump())
    snapshots_before = snapshot_names(site)
    forms = [
        ("/clients/", {"name": "other", "kind": "smb"}),
        ("/clients/acme/settings", {"kind": "both"}),
        ("/clients/acme/snapshot", {}),
        ("/clients/acme/prune", {}),
        ("/clients/acme/points/pin", {"point": point.id}),
        ("/clients/acme/points/unpin", {"point": point.id}),
        ("/clients/acme/points/destroy", {"point": point.id}),
        ("/clients/acme/remove", {}),
        ("/clients/acme/reattach", {}),
        ("/clients/acme/destroy", {"confirm": "acme"}),
        ("/clients/acme/browse/", {"point": point.id}),
        (f"{opened}/zip", {"paths": ["readme.txt"]}),
        (f"{opened}/restore", {"paths": [""], "target": ""}),
        (f"{opened}/close", {}),
    ]
    for path, data in forms:
        for forged in ({}, {"csrf_token": "forged"}):
            response = admin.open(path, "POST", data={**data, **forged})
            assert response.status_code == 400 and "did not come from this appliance" in text(response), path
    assert list(site.db.conn().iterdump()) == before and snapshot_names(site) == snapshots_before
    assert len(site.clones()) == 1
