"""The durable job queue and the worker threads that run it, on a real database.

The job kinds here (``test.*``) are registered by a fixture and removed after each test; they run in a
real :class:`appliance.jobs.worker.Worker`, so the whole path — claim, run, progress, log, outcome — is
the daemon's own.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from appliance.jobs import base, queue
from appliance.jobs.base import JobContext
from appliance.jobs.queue import FINAL_STATES, JobRecord
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system.errors import Busy, Conflict, InvalidInput, NotFound, OutOfSpace
from appliance.system.runner import local_runner
from appliance.zfs.capabilities import zfs_fuse_capabilities
from appliance.zfs.host import ZfsHost

Spawn = Callable[..., subprocess.Popen[str]]
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_final(store: Store, job_id: int, timeout: float = 10.0) -> JobRecord:
    def final() -> JobRecord | None:
        job = queue.get(store, job_id)
        return job if job.state in FINAL_STATES else None

    return wait_for(final, timeout, f"job {job_id} to end")


def messages(store: Store, job_id: int) -> list[str]:
    return [line["message"] for line in queue.log_lines(store, job_id)]


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


# --- job kinds and the worker --------------------------------------------------------------------


class StepsJob:
    """Does ``steps`` steps, reporting progress and checking for a cancel before each."""

    name = "test.steps"
    title = "Steps (test)"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        steps = params.get("steps", 3)
        if not isinstance(steps, int) or steps < 1:
            raise InvalidInput("steps must be a positive number")
        return {"steps": steps}

    def resource(self, params: dict[str, Any]) -> str | None:
        return "test:steps"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        steps = ctx.job.params["steps"]
        for i in range(steps):
            ctx.check_cancelled()
            ctx.progress(i + 1, steps, f"step {i + 1} of {steps}", force=True)
            ctx.log(f"did step {i + 1}")
        return {"steps": steps}


class BlockJob:
    """On its first attempt, waits (through ``ctx.sleep``) until cancelled or the worker stops; later
    attempts finish at once."""

    name = "test.block"
    title = "Block (test)"

    def __init__(self) -> None:
        self.running = threading.Event()

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def resource(self, params: dict[str, Any]) -> str | None:
        return None

    def run(self, ctx: JobContext) -> dict[str, Any]:
        if ctx.job.attempts == 1:
            ctx.progress(1, 10, "blocked", force=True)
            self.running.set()
            ctx.sleep(60)
        return {"attempt": ctx.job.attempts}


class FailJob:
    name = "test.fail"
    title = "Fail (test)"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def resource(self, params: dict[str, Any]) -> str | None:
        return None

    def run(self, ctx: JobContext) -> dict[str, Any]:
        ctx.log("about to run out of space")
        raise OutOfSpace("pool tank")


class CrashJob:
    name = "test.crash"
    title = "Crash (test)"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def resource(self, params: dict[str, Any]) -> str | None:
        return None

    def run(self, ctx: JobContext) -> dict[str, Any]:
        return {"value": int("not a number")}


@dataclasses.dataclass
class Kinds:
    steps: StepsJob
    block: BlockJob
    fail: FailJob
    crash: CrashJob


@pytest.fixture
def kinds() -> Iterator[Kinds]:
    registered = Kinds(StepsJob(), BlockJob(), FailJob(), CrashJob())
    names = [k.name for k in (registered.steps, registered.block, registered.fail, registered.crash)]
    for kind in (registered.steps, registered.block, registered.fail, registered.crash):
        base.register(kind)
    yield registered
    for name in names:
        base.REGISTRY.pop(name, None)


class WorkerHandle:
    def __init__(self, store: Store) -> None:
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.worker = Worker(0, store, ZfsHost(local_runner(), zfs_fuse_capabilities()), self.stop, self.wake)
        self.worker.start()

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()
        self.worker.join(10)
        assert not self.worker.is_alive()


@pytest.fixture
def start_worker(store: Store, kinds: Kinds) -> Iterator[Callable[[], WorkerHandle]]:
    handles: list[WorkerHandle] = []

    def start() -> WorkerHandle:
        handle = WorkerHandle(store)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.shutdown()


def test_registry(kinds: Kinds, store: Store) -> None:
    assert base.get_kind("test.steps") is kinds.steps
    base.register(kinds.steps)  # registering the same object again is harmless
    with pytest.raises(RuntimeError, match="registered twice"):
        base.register(StepsJob())
    with pytest.raises(InvalidInput, match="unknown job kind"):
        base.get_kind("test.nope")
    with pytest.raises(InvalidInput, match="steps"):
        base.submit(store, "test.steps", {"steps": 0}, created_by="cli")
    job = queue.get(store, base.submit(store, "test.steps", {}, created_by="cli", max_attempts=2))
    assert (job.params, job.resource, job.created_by, job.max_attempts) == ({"steps": 3}, "test:steps", "cli", 2)


def test_worker_runs_a_job_to_success(store: Store, start_worker: Callable[[], WorkerHandle]) -> None:
    job_id = base.submit(store, "test.steps", {"steps": 4}, created_by="cli")
    start_worker()
    job = wait_final(store, job_id)
    assert job.state == "succeeded" and job.result == {"steps": 4} and job.error is None
    assert (job.progress_done, job.progress_total, job.progress_text, job.percent) == (4, 4, "step 4 of 4", 100.0)
    assert messages(store, job_id) == [
        "queued by cli",
        "started (attempt 1 of 1)",
        *(f"did step {i}" for i in range(1, 5)),
        "succeeded",
    ]


def test_worker_wakes_for_new_jobs(store: Store, start_worker: Callable[[], WorkerHandle]) -> None:
    handle = start_worker()
    ids = [base.submit(store, "test.steps", {"steps": 1}, created_by="cli") for _ in range(3)]
    handle.wake.set()
    assert [wait_final(store, i).state for i in ids] == ["succeeded"] * 3


def test_worker_records_a_failure(store: Store, start_worker: Callable[[], WorkerHandle]) -> None:
    job_id = base.submit(store, "test.fail", {}, created_by="cli")
    start_worker()
    job = wait_final(store, job_id)
    assert job.state == "failed"
    assert job.error == OutOfSpace("pool tank").to_dict()
    assert job.error["message"] == "Out of space: pool tank"
    assert messages(store, job_id)[-2:] == ["about to run out of space", "failed: Out of space: pool tank"]


def test_worker_records_a_crash_as_internal_error(store: Store, start_worker: Callable[[], WorkerHandle]) -> None:
    crash = base.submit(store, "test.crash", {}, created_by="cli", max_attempts=3)
    after = base.submit(store, "test.steps", {"steps": 1}, created_by="cli")
    start_worker()
    job = wait_final(store, crash)
    assert job.state == "failed"  # a bug is not retried
    assert job.error is not None
    assert job.error["code"] == "internal_error"
    assert job.error["message"] == (
        f"Internal error in job {crash}: ValueError: invalid literal for int() with base 10: 'not a number'"
    )
    assert "bug" in job.error["hint"]
    tracebacks = [line for line in queue.log_lines(store, crash) if line["message"].startswith("Traceback")]
    assert len(tracebacks) == 1 and tracebacks[0]["level"] == "error"
    assert "in run" in tracebacks[0]["message"] and "ValueError" in tracebacks[0]["message"]
    assert wait_final(store, after).state == "succeeded"  # the worker lived on


def test_worker_cancels_a_running_job(store: Store, kinds: Kinds, start_worker: Callable[[], WorkerHandle]) -> None:
    job_id = base.submit(store, "test.block", {}, created_by="cli")
    start_worker()
    assert kinds.block.running.wait(10)
    assert queue.request_cancel(store, job_id, by="user:alice") == "running"
    job = wait_final(store, job_id)
    assert job.state == "cancelled" and job.result is None and job.error is None
    assert messages(store, job_id)[-2:] == ["cancel requested by user:alice", "stopped on request"]


def test_stopping_the_worker_leaves_the_job_for_recovery(
    store: Store, kinds: Kinds, start_worker: Callable[[], WorkerHandle]
) -> None:
    job_id = base.submit(store, "test.block", {}, created_by="cli", max_attempts=2)
    first = start_worker()
    assert kinds.block.running.wait(10)
    first.shutdown()
    job = queue.get(store, job_id)
    assert job.state == "running" and not job.cancel_requested
    assert messages(store, job_id)[-1] == "stopping with the daemon; it will be recovered at next start"

    # The next start: recover, then a new worker runs the job again.
    assert queue.recover(store) == [job_id]
    assert queue.get(store, job_id).state == "queued"
    start_worker()
    job = wait_final(store, job_id)
    assert job.state == "succeeded" and job.result == {"attempt": 2} and job.attempts == 2


KILLED_DAEMON = """
import sys, threading, time
from pathlib import Path
from appliance.jobs import base
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system.runner import local_runner
from appliance.zfs.capabilities import zfs_fuse_capabilities
from appliance.zfs.host import ZfsHost

class Forever:
    name = "test.forever"
    title = "Works until the process dies"
    def validate(self, params):
        return params
    def resource(self, params):
        return params.get("resource")
    def run(self, ctx):
        ctx.progress(1, 100, "working", force=True)
        while True:
            time.sleep(0.05)

base.register(Forever())
store = Store(Path(sys.argv[1]))
stop, wake = threading.Event(), threading.Event()
zfs = ZfsHost(local_runner(), zfs_fuse_capabilities())
for i in range(2):
    Worker(i, store, zfs, stop, wake).start()
print("started", flush=True)
while True:
    time.sleep(1)
"""


def test_kill_9_of_the_daemon_loses_no_job(store: Store, spawn_python: Spawn) -> None:
    """A process running jobs in real workers dies by SIGKILL; the next start's recover() finds every
    job it had, requeues those with attempts left and marks the others interrupted."""
    retry = queue.enqueue(store, "test.forever", {"resource": "r1"}, resource="r1", max_attempts=2)
    last_try = queue.enqueue(store, "test.forever", {"resource": "r2"}, resource="r2", max_attempts=1)
    blocked = queue.enqueue(store, "test.forever", {"resource": "r1"}, resource="r1", max_attempts=1)
    child = spawn_python(KILLED_DAEMON, store.path)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"

    def both_working() -> bool:
        jobs = [queue.get(store, i) for i in (retry, last_try)]
        return all(j.state == "running" and j.progress_done == 1 for j in jobs)

    wait_for(both_working, what="the child's workers to run both jobs")
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert child.returncode == -signal.SIGKILL

    assert store.query_one("PRAGMA integrity_check")[0] == "ok"
    assert sorted(queue.recover(store)) == [retry, last_try]
    job = queue.get(store, retry)
    assert job.state == "queued" and job.attempts == 1
    job = queue.get(store, last_try)
    assert job.state == "interrupted" and job.error is not None and job.error["code"] == "interrupted"
    assert queue.get(store, blocked).state == "queued" and queue.get(store, blocked).attempts == 0
    assert queue.counts(store)["running"] == 0
    # The requeued job is claimable again, ahead of the one that waited behind it.
    again = queue.claim(store, ["test.forever"])
    assert again is not None and again.id == retry and again.attempts == 2
