"""What a job is: a kind with a name, a resource it locks, and ``run(ctx)``.

Each area registers its job kinds with :func:`register`; ``bulwarkd``'s workers run them with a
:class:`JobContext` that reports progress, writes the job's log and tells when a cancel was asked for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.jobs import queue
from appliance.jobs.queue import JobRecord
from appliance.store import Store
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.zfs.host import ZfsHost

PROGRESS_INTERVAL = 0.5  # seconds between progress writes


class JobCancelled(BulwarkError):
    """Job {} was cancelled."""

    code = "job_cancelled"


@dataclass
class JobContext:
    job: JobRecord
    store: Store
    zfs: ZfsHost
    stopping: Callable[[], bool]  # the daemon is shutting down
    _last_progress: float = 0.0

    def progress(self, done: int | None, total: int | None, text: str | None = None, *, force: bool = False) -> None:
        """Report progress (rate-limited to one database write per PROGRESS_INTERVAL)."""
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            queue.set_progress(self.store, self.job.id, done, total, text)

    def remember(self, **values: Any) -> None:
        """Add ``values`` to the job's parameters, durably, before doing what they describe: an attempt after
        a crash finds them in ``self.job.params`` and continues instead of starting over."""
        params = {**self.job.params, **values}
        queue.update_params(self.store, self.job.id, params)
        self.job = dataclasses.replace(self.job, params=params)

    def log(self, message: str, level: str = "info") -> None:
        queue.log(self.store, self.job.id, message, level)

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if someone asked for this job to stop, or the daemon is stopping."""
        if self.stopping() or queue.cancel_requested(self.store, self.job.id):
            raise JobCancelled(self.job.id)

    def sleep(self, seconds: float) -> None:
        """Wait, waking early for a cancel."""
        end = time.monotonic() + seconds
        while True:
            self.check_cancelled()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.25))


class JobKind(Protocol):
    name: str
    title: str  # human name for the UI

    def validate(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def resource(self, params: dict[str, Any]) -> str | None: ...

    def run(self, ctx: JobContext) -> dict[str, Any]: ...


REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if kind.name in REGISTRY and REGISTRY[kind.name] is not kind:
        raise RuntimeError(f"job kind {kind.name} registered twice")
    REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> JobKind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InvalidInput(f"unknown job kind {name!r}") from None


def submit(store: Store, kind_name: str, params: dict[str, Any], *, created_by: str, max_attempts: int = 1) -> int:
    """Validate and enqueue a job (what the web UI, API and CLI call)."""
    kind = get_kind(kind_name)
    checked = kind.validate(params)
    return queue.enqueue(
        store, kind.name, checked, resource=kind.resource(checked), created_by=created_by, max_attempts=max_attempts
    )
