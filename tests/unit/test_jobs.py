"""The durable job queue on a real database: claims, resource locks, retries with backoff, cancel, recovery,
progress and logs.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import pytest

from appliance.jobs import queue
from appliance.store import Store
from appliance.system.errors import Busy, Conflict, InvalidInput, NotFound
from tests.unit.job_helpers import messages

# --- the queue -----------------------------------------------------------------------------------


def test_enqueue_claim_succeed(store: Store) -> None:
    before = time.time()
    job_id = queue.enqueue(store, "k", {"pool": "tank"}, resource="pool:tank", created_by="user:alice")
    job = queue.get(store, job_id)
    assert (job.kind, job.params, job.state, job.resource) == ("k", {"pool": "tank"}, "queued", "pool:tank")
    assert (job.attempts, job.max_attempts, job.created_by) == (0, 1, "user:alice")
    assert before <= job.created_at <= time.time()
    assert job.started_at is None and job.finished_at is None and job.result is None and job.error is None

    claimed = queue.claim(store, ["k"])
    assert claimed is not None and claimed.id == job_id
    assert claimed.state == "running" and claimed.attempts == 1 and claimed.started_at is not None

    queue.succeed(store, job_id, {"errors": 0})
    done = queue.get(store, job_id)
    assert done.state == "succeeded" and done.result == {"errors": 0} and done.finished_at is not None
    assert messages(store, job_id) == ["queued by user:alice", "started (attempt 1 of 1)", "succeeded"]
    assert queue.claim(store, ["k"]) is None


def test_enqueue_defaults_and_validation(store: Store) -> None:
    job = queue.get(store, queue.enqueue(store, "k"))
    assert job.params == {} and job.resource is None and job.created_by is None
    assert messages(store, job.id) == ["queued by system"]
    with pytest.raises(InvalidInput):
        queue.enqueue(store, "k", max_attempts=0)


def test_get_unknown_job(store: Store) -> None:
    with pytest.raises(NotFound, match="job 42"):
        queue.get(store, 42)


def test_claim_takes_the_oldest_first(store: Store) -> None:
    ids = [queue.enqueue(store, "k") for _ in range(3)]
    claimed = [queue.claim(store, ["k"]) for _ in range(3)]
    assert [j.id for j in claimed if j] == ids


def test_claim_filters_kinds(store: Store) -> None:
    a = queue.enqueue(store, "a")
    b = queue.enqueue(store, "b")
    assert queue.claim(store, []) is None
    assert queue.claim(store, ["zzz"]) is None
    job = queue.claim(store, ["b", "c"])
    assert job is not None and job.id == b
    assert queue.get(store, a).state == "queued"
    job = queue.claim(store, iter(["a"]))  # any iterable of kinds
    assert job is not None and job.id == a


def _claim_id(store: Store) -> int | None:
    job = queue.claim(store, ["k"])
    return None if job is None else job.id


def test_claim_respects_the_resource_lock(store: Store) -> None:
    first = queue.enqueue(store, "k", resource="pool:tank")
    second = queue.enqueue(store, "k", resource="pool:tank")
    other = queue.enqueue(store, "k", resource="pool:other")
    free = queue.enqueue(store, "k")
    assert _claim_id(store) == first
    assert _claim_id(store) == other  # skips second: its resource is busy
    assert _claim_id(store) == free
    assert _claim_id(store) is None  # second waits for first
    queue.succeed(store, first)
    assert _claim_id(store) == second


def test_resource_lock_holds_under_concurrent_claims(store: Store) -> None:
    """Four threads claim from one queue of jobs that share a resource: never two running at once."""
    total = 20
    ids = {queue.enqueue(store, "k", resource="pool:tank") for _ in range(total)}
    seen_running: list[int] = []
    finished: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while len(finished) < total:
                job = queue.claim(store, ["k"])
                if job is None:
                    time.sleep(0.001)
                    continue
                row = store.query_one(
                    "SELECT COUNT(*) AS n FROM jobs WHERE state = 'running' AND resource = ?", ("pool:tank",)
                )
                seen_running.append(row["n"])
                time.sleep(0.002)
                queue.succeed(store, job.id)
                finished.append(job.id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close_thread()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(finished) == sorted(ids)
    assert set(seen_running) == {1}
    assert queue.counts(store)["succeeded"] == total


def test_not_before_delays_a_claim(store: Store) -> None:
    job_id = queue.enqueue(store, "k")
    store.conn().execute("UPDATE jobs SET not_before = ? WHERE id = ?", (1000.0, job_id))
    assert queue.claim(store, ["k"], now=999.0) is None
    job = queue.claim(store, ["k"], now=1000.0)
    assert job is not None and job.started_at == 1000.0


def test_retryable_failure_backs_off_until_max_attempts(store: Store) -> None:
    job_id = queue.enqueue(store, "k", max_attempts=3)
    now = time.time()
    for attempt, delay in ((1, queue.BACKOFF_BASE), (2, 2 * queue.BACKOFF_BASE)):
        job = queue.claim(store, ["k"], now=now)
        assert job is not None and job.attempts == attempt
        before = time.time()
        assert queue.fail(store, job_id, Busy("pool tank")) == "queued"
        job = queue.get(store, job_id)
        assert job.state == "queued" and job.finished_at is None
        assert job.not_before is not None and before + delay <= job.not_before <= time.time() + delay
        assert job.error is not None and job.error["code"] == "busy"
        assert queue.claim(store, ["k"], now=job.not_before - 1) is None  # still backing off
        now = job.not_before
    assert queue.claim(store, ["k"], now=now) is not None
    assert queue.fail(store, job_id, Busy("pool tank")) == "failed"
    job = queue.get(store, job_id)
    assert job.state == "failed" and job.attempts == 3 and job.finished_at is not None
    assert job.error == Busy("pool tank").to_dict()
    log = messages(store, job_id)
    assert "failed, will retry in 30 s: In use: pool tank" in log
    assert "failed, will retry in 60 s: In use: pool tank" in log
    assert log[-1] == "failed: In use: pool tank"


def test_backoff_is_capped(store: Store) -> None:
    job_id = queue.enqueue(store, "k", max_attempts=100)
    store.conn().execute("UPDATE jobs SET attempts = 30 WHERE id = ?", (job_id,))
    queue.claim(store, ["k"])
    before = time.time()
    queue.fail(store, job_id, Busy("x"))
    not_before = queue.get(store, job_id).not_before
    assert not_before is not None and not_before <= time.time() + queue.BACKOFF_MAX
    assert not_before >= before + queue.BACKOFF_MAX


def test_non_retryable_failure_fails_at_once(store: Store) -> None:
    job_id = queue.enqueue(store, "k", max_attempts=5)
    queue.claim(store, ["k"])
    assert queue.fail(store, job_id, InvalidInput("bad pool name")) == "failed"
    job = queue.get(store, job_id)
    assert job.state == "failed" and job.attempts == 1
    assert job.error == {
        "code": "invalid_input",
        "message": "Invalid input: bad pool name",
        "hint": InvalidInput.hint,
        "retryable": False,
    }


def test_fail_unknown_job(store: Store) -> None:
    with pytest.raises(NotFound):
        queue.fail(store, 99, Busy("x"))


def test_cancel_queued_job(store: Store) -> None:
    job_id = queue.enqueue(store, "k")
    assert queue.request_cancel(store, job_id, by="user:alice") == "cancelled"
    job = queue.get(store, job_id)
    assert job.state == "cancelled" and job.finished_at is not None
    assert messages(store, job_id)[-1] == "cancelled by user:alice"
    assert queue.claim(store, ["k"]) is None


def test_cancel_running_job_asks_it_to_stop(store: Store) -> None:
    job_id = queue.enqueue(store, "k")
    queue.claim(store, ["k"])
    assert not queue.cancel_requested(store, job_id)
    assert queue.request_cancel(store, job_id) == "running"
    job = queue.get(store, job_id)
    assert job.state == "running" and job.cancel_requested
    assert queue.cancel_requested(store, job_id)
    assert messages(store, job_id)[-1] == "cancel requested by system"
    queue.mark_cancelled(store, job_id)
    assert queue.get(store, job_id).state == "cancelled"


def test_cancel_ended_or_unknown_job(store: Store) -> None:
    job_id = queue.enqueue(store, "k")
    queue.claim(store, ["k"])
    queue.succeed(store, job_id)
    with pytest.raises(Conflict, match="already ended"):
        queue.request_cancel(store, job_id)
    with pytest.raises(NotFound):
        queue.request_cancel(store, 12345)
    assert not queue.cancel_requested(store, 12345)


def test_recover(store: Store) -> None:
    retry = queue.enqueue(store, "k", max_attempts=2)
    last_try = queue.enqueue(store, "k", max_attempts=1)
    waiting = queue.enqueue(store, "k")
    done = queue.enqueue(store, "k")
    for _ in range(4):
        queue.claim(store, ["k"])
    queue.succeed(store, done)
    store.conn().execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (waiting,))

    assert sorted(queue.recover(store, reason="power was lost")) == [retry, last_try]

    job = queue.get(store, retry)
    assert job.state == "queued" and job.not_before is None and job.finished_at is None
    assert messages(store, retry)[-1] == "interrupted (power was lost); queued again"
    assert queue.log_lines(store, retry)[-1]["level"] == "warning"

    job = queue.get(store, last_try)
    assert job.state == "interrupted" and job.finished_at is not None
    assert job.error == {
        "code": "interrupted",
        "message": "Interrupted: power was lost.",
        "hint": "Start the job again.",
        "retryable": True,
    }
    assert messages(store, last_try)[-1] == "interrupted (power was lost); no attempts left"
    assert queue.get(store, waiting).state == "queued"
    assert queue.get(store, done).state == "succeeded"
    assert queue.recover(store) == []  # nothing left running


def test_recover_honours_a_cancel_request(store: Store) -> None:
    """A job someone asked to cancel is not started again because the daemon died meanwhile."""
    job_id = queue.enqueue(store, "k", max_attempts=3)
    queue.claim(store, ["k"])
    queue.request_cancel(store, job_id, by="user:alice")
    assert queue.recover(store) == [job_id]
    job = queue.get(store, job_id)
    assert job.state == "cancelled" and job.finished_at is not None
    assert queue.claim(store, ["k"]) is None


def test_counts_and_list(store: Store) -> None:
    assert queue.counts(store) == dict.fromkeys(queue.STATES, 0)
    a = queue.enqueue(store, "a")
    b = queue.enqueue(store, "b")
    c = queue.enqueue(store, "a")
    queue.claim(store, ["b"])
    queue.request_cancel(store, c)
    assert queue.counts(store) == {**dict.fromkeys(queue.STATES, 0), "queued": 1, "running": 1, "cancelled": 1}
    assert [j.id for j in queue.list_jobs(store)] == [c, b, a]  # newest first
    assert [j.id for j in queue.list_jobs(store, kind="a")] == [c, a]
    assert [j.id for j in queue.list_jobs(store, states=["queued", "running"])] == [b, a]
    assert [j.id for j in queue.list_jobs(store, states=("running",), kind="a")] == []
    assert [j.id for j in queue.list_jobs(store, limit=1)] == [c]


def test_log_lines(store: Store) -> None:
    job_id = queue.enqueue(store, "k")
    other = queue.enqueue(store, "k")
    queue.log(store, job_id, "first")
    queue.log(store, other, "not mine")
    queue.log(store, job_id, "second\nwith a newline", "warning")
    lines = queue.log_lines(store, job_id)
    assert [(line["level"], line["message"]) for line in lines] == [
        ("info", "queued by system"),
        ("info", "first"),
        ("warning", "second\nwith a newline"),
    ]
    assert all(isinstance(line["at"], float) for line in lines)


def test_progress_percent_and_eta(store: Store) -> None:
    job_id = queue.enqueue(store, "k")
    queue.claim(store, ["k"], now=1000.0)
    queue.set_progress(store, job_id, 50, 200, "50 of 200 blocks")
    job = queue.get(store, job_id)
    assert (job.progress_done, job.progress_total, job.progress_text) == (50, 200, "50 of 200 blocks")
    assert job.percent == 25.0
    assert job.eta_seconds(now=1010.0) == pytest.approx(30.0)  # 5 per second, 150 left
    progress = job.to_dict()["progress"]
    assert progress["done"] == 50 and progress["total"] == 200 and progress["percent"] == 25.0

    cases: list[tuple[dict[str, Any], float | None, float | None]] = [
        ({"progress_done": 300}, 100.0, 0.0),  # clamped
        ({"progress_done": 0}, 0.0, None),  # no rate yet
        ({"progress_done": None}, None, None),
        ({"progress_total": None}, None, None),
        ({"progress_total": 0}, None, None),
        ({"state": "queued"}, 25.0, None),
        ({"state": "succeeded"}, 25.0, None),
        ({"started_at": None}, 25.0, None),
        ({"started_at": 1010.0}, 25.0, None),  # no time elapsed
    ]
    for change, percent, eta in cases:
        variant = dataclasses.replace(job, **change)
        assert variant.percent == percent, change
        assert variant.eta_seconds(now=1010.0) == eta, change

    # A new attempt starts with fresh progress.
    store.conn().execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (job_id,))
    again = queue.claim(store, ["k"])
    assert again is not None and again.progress_done is None and again.percent is None


def test_job_record_to_dict_is_json(store: Store) -> None:
    job_id = queue.enqueue(store, "k", {"a": [1, 2]}, created_by="cli")
    data = queue.get(store, job_id).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["params"] == {"a": [1, 2]} and data["state"] == "queued" and data["progress"]["eta_seconds"] is None
