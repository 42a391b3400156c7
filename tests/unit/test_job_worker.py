"""The worker threads that run the queue, on a real database.

The job kinds here (``test.*``) are registered by a fixture and removed after each test; they run in a
real :class:`appliance.jobs.worker.Worker`, so the whole path — claim, run, progress, log, outcome — is
the daemon's own.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from appliance.jobs import base, queue
from appliance.jobs.base import JobContext
from appliance.jobs.worker import Worker
from appliance.store import Store
from appliance.system.errors import InvalidInput, OutOfSpace
from appliance.system.runner import local_runner
from appliance.zfs.capabilities import zfs_fuse_capabilities
from appliance.zfs.host import ZfsHost
from tests.unit.job_helpers import messages, wait_final, wait_for

Spawn = Callable[..., subprocess.Popen[str]]


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
