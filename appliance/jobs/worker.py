"""Worker threads that claim queued jobs and run them."""

from __future__ import annotations

import logging
import threading
import traceback

from appliance.jobs import base, failures, queue
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.jobs")
POLL_INTERVAL = 1.0


class InternalError(BulwarkError):
    """Internal error in job {}: {}"""

    code = "internal_error"
    hint = "This is a bug in Bulwark; the job's log has the details. Report it."


class Worker(threading.Thread):
    def __init__(self, index: int, store: Store, zfs: ZfsHost, stop: threading.Event, wake: threading.Event):
        super().__init__(name=f"job-worker-{index}", daemon=True)
        self.store = store
        self.zfs = zfs
        self.stop_event = stop
        self.wake = wake
        self.current: int | None = None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                job = queue.claim(self.store, base.REGISTRY.keys())
                if job is None:
                    self.wake.wait(POLL_INTERVAL)
                    self.wake.clear()
                    continue
                self.current = job.id
                try:
                    self.execute(job)
                finally:
                    self.current = None
        finally:
            self.store.close_thread()

    def execute(self, job: queue.JobRecord) -> None:
        kind = base.REGISTRY[job.kind]
        ctx = base.JobContext(job, self.store, self.zfs, self.stop_event.is_set)
        log.info("job %d (%s) started", job.id, job.kind)
        try:
            result = kind.run(ctx)
        except base.JobCancelled:
            if self.stop_event.is_set() and not queue.cancel_requested(self.store, job.id):
                # The daemon is stopping: leave the job running so the next start recovers it.
                log.info("job %d (%s) interrupted by shutdown", job.id, job.kind)
                queue.log(self.store, job.id, "stopping with the daemon; it will be recovered at next start")
                return
            queue.mark_cancelled(self.store, job.id)
            log.info("job %d (%s) cancelled", job.id, job.kind)
            return
        except BulwarkError as exc:
            state = queue.fail(self.store, job.id, exc)
            log.warning("job %d (%s) failed (%s): %s", job.id, job.kind, state, exc)
            if state == "failed":
                failures.job_failed(self.store, job, exc.to_dict())
            return
        except Exception as exc:  # a bug: record it on the job, keep the worker alive
            log.exception("job %d (%s) crashed", job.id, job.kind)
            queue.log(self.store, job.id, traceback.format_exc(), "error")
            error = InternalError(job.id, f"{type(exc).__name__}: {exc}")
            if queue.fail(self.store, job.id, error) == "failed":
                failures.job_failed(self.store, job, error.to_dict())
            return
        queue.succeed(self.store, job.id, result)
        failures.job_succeeded(self.store, job)
        log.info("job %d (%s) succeeded", job.id, job.kind)
