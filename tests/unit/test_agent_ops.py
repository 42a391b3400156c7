"""Agent operations without the web layer: the per-client agent settings (paths, bandwidth limit, window) and
their validation, when a closed window opens next (time zones and daylight saving included), the rate limits of
/agent/v1, the progress and failure reports of open jobs with their ETA, and the agent's side of the settings."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from agent import policy
from agent.transport import AgentError
from appliance import schedules
from appliance.clients.errors import ClientNotFound
from appliance.ingest import agent_settings, credentials, limits, progress
from appliance.ingest.agent_settings import OutsideBackupWindow
from appliance.ingest.errors import JobNotFound, JobNotOpen, ProtocolError
from appliance.store import Store
from appliance.system import settings as appliance_settings
from appliance.system.errors import InvalidInput
from tests.agent_ops_helpers import agent_credential, agent_job, db_client

OSLO = ZoneInfo("Europe/Oslo")


def at(text: str, zone: ZoneInfo = OSLO) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


@pytest.fixture
def acme(store: Store) -> str:
    config = appliance_settings.ApplianceSettings(appliance_settings.PoolConfig("tank", "file"), timezone="Europe/Oslo")
    appliance_settings.save(store, config)
    return db_client(store, "acme").name


# -- settings ------------------------------------------------------------------------------------------------


def test_paths_are_absolute_lines_without_dot_dot_and_deduplicated() -> None:
    assert agent_settings.check_paths("/home\r\n\n/etc\n/home\n  C:\\Users  \nD:/data") == (
        "/home",
        "/etc",
        "C:\\Users",
        "D:/data",
    )
    assert agent_settings.check_paths([]) == ()
    for bad, why in [
        ("home", "not absolute"),
        ("/srv/../etc", "'..'"),
        ("C:\\a\\..\\b", "'..'"),
        (["/a\tb"], "control characters"),
        (["/" + "x" * 1100], "longer than"),
        ([f"/p{i}" for i in range(65)], "at most 64"),
        ([3], "must be text"),
        (7, "list of absolute paths"),
    ]:
        with pytest.raises(InvalidInput, match=why):
            agent_settings.check_paths(bad)


def test_bandwidth_limit_is_whole_kib_per_second_or_none() -> None:
    for nothing in (None, "", " none ", "0", 0, "off"):
        assert agent_settings.check_bwlimit(nothing) is None
    assert agent_settings.check_bwlimit("2048") == 2048
    assert agent_settings.check_bwlimit(512) == 512
    for bad in ("10M", "-5", -5, True, 1.5, 10**12):
        with pytest.raises(InvalidInput):
            agent_settings.check_bwlimit(bad)


def test_update_changes_only_what_is_given_audits_it_and_refuses_bad_input_whole(store: Store, acme: str) -> None:
    assert agent_settings.get(store, acme) == agent_settings.AgentSettings(acme)
    got = agent_settings.update(store, acme, by="user:admin", paths=["/srv", "/etc"], bwlimit_kibps="4096")
    assert (got.paths, got.bwlimit_kibps, got.window, got.updated_by) == (("/srv", "/etc"), 4096, None, "user:admin")
    got = agent_settings.update(store, acme, by="user:admin", window="22:00 - 6:00")
    assert (got.paths, got.window) == (("/srv", "/etc"), "22:00-06:00")  # canonical, the rest kept
    before = agent_settings.get(store, acme)
    with pytest.raises(schedules.InvalidWindow):
        agent_settings.update(store, acme, by="user:admin", paths=["/new"], window="25:00-26:00")
    with pytest.raises(InvalidInput):
        agent_settings.update(store, acme, by="user:admin", bwlimit_kibps="fast", paths=["/new"])
    assert agent_settings.get(store, acme) == before  # a bad field: nothing changed, not even the good ones
    rows = store.query("SELECT actor, target, details FROM audit WHERE action = 'agent.settings' ORDER BY id")
    assert [(r["actor"], r["target"]) for r in rows] == [("user:admin", "client:acme")] * 2
    assert json.loads(rows[-1]["details"]) == {
        "paths": ["/srv", "/etc"],
        "bwlimit_kibps": 4096,
        "window": "22:00-06:00",
    }
    agent_settings.update(store, acme, by="cli", paths=[], bwlimit_kibps=None, window="any")
    assert agent_settings.get(store, acme).to_dict()["paths"] == []
    with pytest.raises(ClientNotFound):
        agent_settings.get(store, "no-such-client")


def test_effective_bandwidth_is_the_lower_limit() -> None:
    assert agent_settings.effective_bwlimit(0, None) == 0
    assert agent_settings.effective_bwlimit(500, None) == 500
    assert agent_settings.effective_bwlimit(0, 300) == 300
    assert agent_settings.effective_bwlimit(500, 300) == 300
    assert agent_settings.effective_bwlimit(200, 300) == 200
    assert policy.bwlimit(0, {}) == 0
    assert policy.bwlimit(500, {"bwlimit_kibps": 300}) == 300 * 1024
    assert policy.bwlimit(200, {"bwlimit_kibps": 300}) == 200 * 1024
    assert policy.bwlimit(0, {"bwlimit_kibps": None}) == 0


# -- the backup window ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "now", "opens"),
    [
        ("22:00-06:00", "2026-03-10 12:00", "2026-03-10 22:00"),  # closed by day: tonight
        ("22:00-06:00", "2026-03-10 06:00", "2026-03-10 22:00"),  # the end minute is outside
        ("mon-fri 20:00-06:00", "2026-03-14 12:00", "2026-03-16 20:00"),  # Saturday noon: Monday evening
        ("mon-fri 20:00-06:00", "2026-03-14 05:00", "2026-03-16 20:00"),  # still in Friday's span: next is Monday
        ("sat 00:00-24:00", "2026-03-14 00:00", "2026-03-21 00:00"),  # inside now: next opening is next week
        ("02:00-03:00", "2026-03-29 01:30", "2026-03-29 03:00"),  # 02:00 does not exist that night (DST)
    ],
)
def test_next_opening(window: str, now: str, opens: str) -> None:
    parsed = schedules.parse_window(window)
    assert parsed is not None
    got = agent_settings.next_opening(parsed, at(now), OSLO)
    assert dt.datetime.fromtimestamp(got, OSLO).strftime("%Y-%m-%d %H:%M") == opens


def test_friday_night_span_runs_into_saturday_morning() -> None:
    parsed = schedules.parse_window("mon-fri 20:00-06:00")
    assert parsed is not None and parsed.contains(at("2026-03-14 05:00"), OSLO)


def test_a_job_outside_the_window_is_refused_with_when_it_opens(store: Store, acme: str) -> None:
    agent_settings.check_open_now(store, acme, at("2026-03-10 12:00"))  # no window: any time
    agent_settings.update(store, acme, by="cli", window="22:00-06:00")
    agent_settings.check_open_now(store, acme, at("2026-03-10 23:30"))
    agent_settings.check_open_now(store, acme, at("2026-03-11 05:59"))
    with pytest.raises(OutsideBackupWindow) as refused:
        agent_settings.check_open_now(store, acme, at("2026-03-10 21:00"))
    exc = refused.value
    assert exc.retryable and exc.http_status == 409 and exc.code == "outside_backup_window"
    assert exc.retry_after == 3600 and exc.opens_at == at("2026-03-10 22:00")
    assert "22:00-06:00 (Europe/Oslo)" in exc.message and "2026-03-10 22:00 CET" in exc.message
    state = agent_settings.for_agent(store, acme, at("2026-03-10 21:00"))
    assert state == {
        "paths": [],
        "bwlimit_kibps": None,
        "window": "22:00-06:00",
        "window_open": False,
        "window_opens_at": at("2026-03-10 22:00"),
        "timezone": "Europe/Oslo",
    }


def test_the_agent_stops_before_scanning_when_the_window_is_closed() -> None:
    policy.check_window({})  # an appliance that says nothing
    policy.check_window({"window": None, "window_open": True})
    with pytest.raises(AgentError, match="only within 22:00-06:00") as refused:
        policy.check_window({"window": "22:00-06:00", "window_open": False, "window_opens_at": 1.8e9})
    assert refused.value.code in policy.RETRY_LATER


def test_the_agent_takes_the_appliance_paths_when_given_none() -> None:
    assert policy.paths(["/x"], {"paths": ["/srv"]}) == ["/x"]
    assert policy.paths([], {"paths": ["/srv", "/etc"]}) == ["/srv", "/etc"]
    for settings in ({}, {"paths": []}, {"paths": "/srv"}):
        with pytest.raises(AgentError, match="no paths to back up") as refused:
            policy.paths([], settings)
        assert "Agents" in refused.value.hint


# -- rate limits ---------------------------------------------------------------------------------------------


def test_failed_authentications_throttle_the_address_only(store: Store) -> None:
    now = 1_000_000.0
    for i in range(limits.MAX_ADDRESS_FAILURES - 1):
        limits.record_failure(store, "192.0.2.7", now + i)
    limits.check_address(store, "192.0.2.7", now + 30)  # one short of the limit
    limits.record_failure(store, "192.0.2.7", now + 30)
    with pytest.raises(limits.AuthThrottled) as refused:
        limits.check_address(store, "192.0.2.7", now + 40)
    exc = refused.value
    assert exc.http_status == 429 and exc.retryable and exc.retry_after == limits.LOCKOUT_SECONDS - 10
    assert "192.0.2.7 (20 within 15 minutes)" in exc.message
    limits.check_address(store, "192.0.2.8", now + 40)  # another address is not concerned
    limits.check_address(store, "192.0.2.7", now + 30 + limits.LOCKOUT_SECONDS + 1)  # over once the time passed


def test_requests_at_once_per_credential() -> None:
    flight = limits.InFlight(limit=2)
    flight.acquire("ag-a")
    flight.acquire("ag-a")
    flight.acquire("ag-b")
    with pytest.raises(limits.RateLimited) as refused:
        flight.acquire("ag-a")
    assert refused.value.code == "rate_limited" and refused.value.retry_after == 1
    flight.release("ag-a")
    flight.acquire("ag-a")
    for _ in range(3):
        flight.release("ag-a")
    assert flight.running("ag-a") == 0 and flight.running("ag-b") == 1


def test_open_jobs_per_credential_count_only_live_ones(store: Store, acme: str) -> None:
    agent_id, _ = agent_credential(store, acme)
    now = 2_000_000.0
    agent_job(store, acme, agent_id, started_at=now - 7200)  # abandoned: no sign of life for two hours
    agent_job(store, acme, agent_id, started_at=now - 7200, progress_at=now - 60)  # long, but reporting
    agent_job(store, acme, agent_id, state="committed", started_at=now - 10)
    for _ in range(limits.MAX_OPEN_JOBS - 2):
        agent_job(store, acme, agent_id, started_at=now - 100)
    limits.check_open_jobs(store, agent_id, now)  # three live open jobs
    agent_job(store, acme, agent_id, started_at=now - 5)
    with pytest.raises(limits.TooManyJobs) as refused:
        limits.check_open_jobs(store, agent_id, now)
    assert refused.value.http_status == 429 and refused.value.retry_after == limits.JOB_IDLE_SECONDS - 100
    other, _ = agent_credential(store, acme, "fs2")
    limits.check_open_jobs(store, other, now)


# -- progress and failure reports ----------------------------------------------------------------------------


def test_progress_reports_drive_the_bar_and_eta(store: Store, acme: str) -> None:
    agent_id, _ = agent_credential(store, acme)
    cred = credentials.get(store, agent_id)
    job = agent_job(store, acme, agent_id, started_at=100.0)
    progress.record(store, cred, job, {"phase": "scanning"}, now=101.0)
    found = progress.get_job(store, job)
    assert (found.phase, found.percent, found.eta_seconds(), found.hostname) == ("scanning", None, None, "fs1.example")
    progress.record(store, cred, job, {"phase": "sending", "bytes_done": 0, "bytes_total": 1000}, now=110.0)
    progress.record(store, cred, job, {"phase": "sending", "bytes_done": 250, "bytes_total": 1000,
                                       "files_done": 1, "files_total": 4}, now=120.0)  # fmt: skip
    found = progress.get_job(store, job)
    assert found.phase_started_at == 110.0 and found.progress_at == 120.0  # the phase began at its first report
    assert found.percent == 25.0 and found.eta_seconds() == 30.0  # 250 bytes in 10 s: 750 more take 30 s
    assert not found.stalled(120.0 + progress.STALLED_SECONDS - 1) and found.stalled(
        120.0 + progress.STALLED_SECONDS + 1
    )
    progress.record(store, cred, job, {"phase": "committing"}, now=150.0)
    found = progress.get_job(store, job)
    assert found.phase_started_at == 150.0 and found.percent is None
    assert progress.list_jobs(store, client=acme)[0].id == job


def test_malformed_or_misplaced_reports_change_nothing(store: Store, acme: str) -> None:
    agent_id, _ = agent_credential(store, acme)
    cred = credentials.get(store, agent_id)
    job = agent_job(store, acme, agent_id)
    before = progress.get_job(store, job)
    for bad in (
        [],
        {},
        {"phase": "dancing"},
        {"phase": "sending", "bytes_done": -1},
        {"phase": "sending", "bytes_done": True},
        {"phase": "sending", "bytes_done": "5"},
        {"phase": "sending", "bytes_done": 2**63},
        {"phase": "sending", "bytes_done": 11, "bytes_total": 10},
        {"phase": "sending", "files_done": 3, "files_total": 2},
    ):
        with pytest.raises(ProtocolError):
            progress.record(store, cred, job, bad)
    db_client(store, "globex")
    _, _ = agent_credential(store, "globex")
    stranger = credentials.get(store, credentials.list_for(store, "globex")[0].id)
    with pytest.raises(JobNotFound):  # another client's job does not exist for this credential
        progress.record(store, stranger, job, {"phase": "sending"})
    with pytest.raises(JobNotFound):
        progress.fail(store, stranger, job, {"error": "x"})
    assert progress.get_job(store, job) == before
    done = agent_job(store, acme, agent_id, state="committed", finished_at=5.0)
    with pytest.raises(JobNotOpen):
        progress.record(store, cred, done, {"phase": "sending"})


def test_a_failure_report_closes_the_job_with_its_error(store: Store, acme: str) -> None:
    agent_id, _ = agent_credential(store, acme)
    cred = credentials.get(store, agent_id)
    job = agent_job(store, acme, agent_id, started_at=10.0)
    for bad in ({}, {"error": ""}, {"error": 5}, "boom"):
        with pytest.raises(ProtocolError):
            progress.fail(store, cred, job, bad)
    got = progress.fail(store, cred, job, {"error": "  /srv/db.sqlite:\n permission denied " + "x" * 2000}, now=70.0)
    assert got["state"] == "failed" and got["error"].startswith("/srv/db.sqlite: permission denied x")
    found = progress.get_job(store, job)
    assert (found.state, found.duration, len(found.error or "")) == ("failed", 60.0, progress.MAX_ERROR)
    with pytest.raises(JobNotOpen):
        progress.fail(store, cred, job, {"error": "again"})
    assert store.query_one("SELECT actor FROM audit WHERE action = 'agent.job_failed'")["actor"] == f"agent:{agent_id}"
