"""Offsite building blocks without ZFS: envelopes, keys and the recovery kit, bandwidth windows, metrics."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import metrics
from appliance.offsite import bandwidth, envelope, keys, kit
from appliance.offsite.errors import (
    ApplianceKeyMissing,
    BadKit,
    KeyMissing,
    NoDataKey,
    Tampered,
    UnsupportedVersion,
    WrongPassphrase,
)
from appliance.store import Store
from appliance.system.errors import AlreadyExists, InvalidInput
from appliance.system.paths import Paths

PASS = "correct horse battery staple"
KEY, KID, SID, OTHER = os.urandom(32), os.urandom(8), os.urandom(16), os.urandom(16)


def sealed(payload: bytes, index: int, *, last: bool = False, owner: bytes = SID) -> bytes:
    return envelope.Sealer(KEY, KID, envelope.CHUNK, owner).seal(payload, index, last=last)[0]


def opener(owner: bytes = SID, keys_: dict[bytes, bytes] | None = None) -> envelope.Opener:
    return envelope.Opener({KID: KEY} if keys_ is None else keys_, envelope.CHUNK, owner, limit=1 << 20)


def test_envelope_round_trip_and_header() -> None:
    data = b"zfs send stream " * 1000
    blob = sealed(data, 7, last=True)
    assert blob[:4] == b"BWOE" and len(blob) < len(data)  # compressed
    opened = opener().open("c", blob, 7)
    assert opened.payload == data and opened.header.last and opened.header.index == 7
    random = os.urandom(5000)  # incompressible: stored as is
    assert envelope.parse_header("c", sealed(random, 0)).compression == envelope.NONE
    assert opener().open("c", sealed(b"", 0), 0).payload == b""
    assert sealed(data, 1) != sealed(data, 1)  # a fresh nonce every time


@pytest.mark.parametrize(
    ("mutate", "error", "text"),
    [
        (lambda b: b[:60] + bytes([b[60] ^ 1]) + b[61:], Tampered, "tag does not match"),
        (lambda b: b[:6] + b"\x01" + b[7:], Tampered, "tag does not match"),  # LAST flag set by hand
        (lambda b: b"XXXX" + b[4:], Tampered, "bad magic"),
        (lambda b: b[:4] + b"\x02" + b[5:], UnsupportedVersion, "version 2"),
        (lambda b: b[:40], Tampered, "too short"),
    ],
)
def test_envelope_tampering(mutate, error, text) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=text):
        opener().open("c", mutate(sealed(b"x" * 100, 3)), 3)


def test_envelope_position_owner_and_keys() -> None:
    blob = sealed(b"x" * 100, 3)
    with pytest.raises(Tampered, match="reordered"):
        opener().open("c", blob, 4)
    with pytest.raises(Tampered, match="spliced"):
        opener(OTHER).open("c", blob, 3)
    with pytest.raises(KeyMissing, match=KID.hex()):
        opener(keys_={}).open("c", blob, 3)
    with pytest.raises(Tampered, match="wrong key"):
        opener(keys_={KID: os.urandom(32)}).open("c", blob, 3)
    manifest = envelope.Sealer(KEY, KID, envelope.STREAM_MANIFEST, SID).seal(b"{}", 0)[0]
    with pytest.raises(Tampered, match="stream manifest where a chunk"):
        opener().open("m", manifest, 0)


def test_keys_init_rotate_kit_and_errors(store: Store, tmp_path: Path, weak_kdf: None) -> None:
    paths = Paths(tmp_path)
    with pytest.raises(NoDataKey):
        keys.active_key(store, paths)
    with pytest.raises(InvalidInput, match="at least 12"):
        keys.init_key(store, paths, "short")
    first = keys.init_key(store, paths, PASS)
    assert oct((tmp_path / "offsite" / "appliance.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(AlreadyExists):
        keys.init_key(store, paths, PASS)
    with pytest.raises(WrongPassphrase):
        keys.rotate(store, paths, "another passphrase entirely")
    second = keys.rotate(store, paths, PASS)
    assert keys.active_key(store, paths)[0].hex() == second.id
    assert [k.active for k in keys.list_keys(store)] == [False, True] and first.id != second.id
    everything = keys.all_keys(store, paths)
    raw = store.query("SELECT local_wrapped, kit_entry FROM offsite_keys")
    for row in raw:  # no data key in the database in the clear
        for key in everything.values():
            assert key not in bytes(row["local_wrapped"]) and key.hex() not in row["kit_entry"]

    text = kit.render(keys.kit_document(store, "site-a"))
    assert keys.keys_from_kit(kit.parse(text), PASS) == everything
    printable = "\n".join(line for line in text.splitlines() if line[:3].isdigit())
    assert keys.keys_from_kit(kit.parse(printable), PASS) == everything
    with pytest.raises(WrongPassphrase):
        keys.keys_from_kit(kit.parse(text), PASS + "!")
    lines = printable.splitlines()
    typo = lines[1].split()
    typo[1] = typo[1][:-1] + ("A" if typo[1][-1] != "A" else "B")
    with pytest.raises(BadKit, match="line 002 is mistyped"):
        kit.parse("\n".join([lines[0], " ".join(typo), *lines[2:]]))
    with pytest.raises(BadKit, match="line 002 is missing"):
        kit.parse("\n".join([lines[0], *lines[2:]]))
    with pytest.raises(BadKit):
        kit.parse("hello")

    (tmp_path / "offsite" / "appliance.key").unlink()
    with pytest.raises(ApplianceKeyMissing):
        keys.active_key(store, paths)
    fresh_paths = Paths(tmp_path / "fresh")
    fresh_paths.data_dir.mkdir()
    fresh = Store.open(tmp_path / "fresh" / "bulwark.db")
    try:
        keys.import_kit(fresh, fresh_paths, kit.parse(text), PASS)
        assert keys.all_keys(fresh, fresh_paths) == everything
        assert keys.active_key(fresh, fresh_paths)[0].hex() == second.id
    finally:
        fresh.close()


def test_bandwidth_windows() -> None:
    rules = [bandwidth.parse_rule("weekdays 08:00-18:00=1024"), bandwidth.parse_rule("22:00-06:00=off")]
    monday_noon = dt.datetime(2026, 11, 23, 12, 0)
    assert bandwidth.limit_at(rules, 4096, monday_noon) == 1024
    assert bandwidth.limit_at(rules, 4096, monday_noon.replace(day=22)) == 4096  # Sunday
    assert bandwidth.limit_at(rules, 4096, monday_noon.replace(hour=23)) is None
    assert bandwidth.limit_at(rules, 4096, monday_noon.replace(hour=3)) is None  # after midnight
    assert rules[0].text() == "weekdays 08:00-18:00=1024"
    for bad in ("8-18=5", "weekdays 08:00-08:00=1", "25:00-26:00=1", "08:00-18:00=0", "x 08:00-09:00=1"):
        with pytest.raises(InvalidInput):
            bandwidth.parse_rule(bad)
    slept: list[float] = []
    clock = [0.0]
    throttle = bandwidth.Throttle(rules, None, clock=lambda: clock[0], sleep=slept.append, now=lambda: monday_noon)
    throttle.consume(1024 * 1024)  # 1 MiB at 1024 KiB/s: one second
    throttle.consume(512 * 1024)
    assert slept == pytest.approx([1.0, 1.5])


def test_backlog_metric_has_samples(store: Store) -> None:
    now = time.time()
    with store.write() as tx:
        tx.execute("INSERT INTO offsite_backlog_samples VALUES ('acme', 'usb', ?, 100)", (now - 600,))
        tx.execute("INSERT INTO offsite_backlog_samples VALUES ('acme', 'usb', ?, 5000)", (now,))
        tx.execute(
            "INSERT INTO offsite_verifications (client, target, at, ok, detail) VALUES ('acme', 'usb', ?, 1, '{}')",
            (now,),
        )
    text = metrics.exposition(store, None, now=now).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert samples[("bulwark_offsite_backlog_bytes", (("client", "acme"), ("target", "usb")))] == 5000
    assert samples[("bulwark_offsite_verified", (("client", "acme"), ("target", "usb")))] == 1


def test_offsite_alerts(store: Store) -> None:
    from appliance import alerts
    from appliance.offsite import watch
    from tests.alert_web_helpers import add_client_row

    add_client_row(store, "acme")
    now = time.time()
    with store.write() as tx:
        tx.execute(
            "INSERT INTO offsite_targets VALUES ('usb', 'local', '{\"path\": \"/x\"}', NULL, 2, ?, ?)", (now, now)
        )
        tx.execute(
            "INSERT INTO offsite_policies (client, target, enabled, interval_s, next_run_at, last_run_at)"
            " VALUES ('acme', 'usb', 1, 3600, ?, ?)",
            (now - 3 * 3600, now - 3 * 3600),
        )
    assert watch.check_stale(store, now=now) == ["offsite:stale:acme:usb"]
    (alert,) = alerts.list_alerts(store, category="offsite")
    assert alert.message == "acme has sent nothing complete to usb for 3h (schedule: every 1h)"
    with store.write() as tx:
        tx.execute(
            "INSERT INTO offsite_streams (id, target, client, area, chain_id, seq, snapshot, key_id, state, started_at,"
            " completed_at) VALUES ('s1', 'usb', 'acme', 'share', 'c1', 0, 'bw-x', 'k', 'complete', ?, ?)",
            (now - 60, now - 30),
        )
    assert watch.check_stale(store, now=now) == [] and alerts.list_alerts(store, category="offsite") == []
    watch.verified(store, "acme", "usb", False, "chunk 3 failed authentication")
    (alert,) = alerts.list_alerts(store, category="offsite")
    assert alert.level == "critical" and "chunk 3 failed authentication" in alert.message
    watch.verified(store, "acme", "usb", True, "")
    assert alerts.list_alerts(store, category="offsite") == []


def test_scheduler_queues_due_policies_once(store: Store, tmp_path: Path, weak_kdf: None) -> None:
    from appliance.offsite import config, jobs
    from tests.alert_web_helpers import add_client_row

    add_client_row(store, "acme")
    add_client_row(store, "bravo")
    (tmp_path / "usb").mkdir()
    config.add_target(store, "usb", "local", {"path": str(tmp_path / "usb")}, None, by="test")
    keys.init_key(store, Paths(tmp_path), PASS)
    config.set_policy(store, "acme", "usb", by="test", enabled=True, interval_s=3600)
    config.set_policy(store, "bravo", "usb", by="test", enabled=False)
    now = time.time()
    (job,) = jobs.tick(store, now=now + 1)
    assert jobs.tick(store, now=now + 2) == []  # queued already (and not due again for an hour)
    assert jobs.active_job(store, "acme", "usb") == job and jobs.active_job(store, "bravo", "usb") is None
    policy = config.get_policy(store, "acme", "usb")
    assert policy.next_run_at == pytest.approx(now + 1 + 3600) and policy.last_job_id == job
    rows = {r["client"]: r for r in jobs.overview(store)}
    assert rows["acme"]["job"]["id"] == job and rows["bravo"]["enabled"] is False
