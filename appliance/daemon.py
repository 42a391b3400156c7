"""``bulwarkd``: the job workers and the scheduler, in one process.

The daemon writes a heartbeat to the database so that ``bulwark status`` and the web UI (other
processes) can tell whether it is alive.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import appliance.clients.jobs  # noqa: F401  (registers the client.snapshot, client.prune, client.restore kinds)
import appliance.disks.pool  # noqa: F401  (registers the pool.scrub job kind)
import appliance.offsite.jobs as offsite_jobs  # registers offsite.replicate and offsite.verify
from appliance import alerts
from appliance.alerts import delivery, outbox
from appliance.clients import browse, points, reconcile, rpo, scheduler
from appliance.disks import health, scrubs
from appliance.disks import pool as pool_service
from appliance.disks.service import DiskService
from appliance.jobs import queue
from appliance.jobs.worker import Worker
from appliance.reports import history
from appliance.reports import schedule as report_schedule
from appliance.samba import tasks as smb_tasks
from appliance.store import Store
from appliance.system.errors import BulwarkError
from appliance.system.paths import Paths
from appliance.system.runner import LocalRunner, Runner, local_runner
from appliance.tunnel.supervisor import Supervisor as TunnelSupervisor
from appliance.zfs import pools
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.daemon")

HEARTBEAT_KEY = "daemon.heartbeat"
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_STALE = 30.0
SCHEDULE_SECONDS = 20.0
DELIVERY_POLL = 0.25  # how often the outbox is looked at (the web process and the CLI queue into it)


@dataclass
class PeriodicTask:
    name: str
    interval: float
    fn: Callable[[], None]
    next_run: float = 0.0  # monotonic; 0 = run at start


@dataclass
class Daemon:
    store: Store
    zfs: ZfsHost
    pool_name: str
    runner: Runner
    workers: int = 2
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    started_at: float = 0.0
    disks: DiskService | None = None

    def tasks(self) -> list[PeriodicTask]:
        return [
            PeriodicTask("heartbeat", HEARTBEAT_SECONDS, self.heartbeat),
            PeriodicTask("pool.sample", 300.0, self.sample_pool),
            PeriodicTask("clients.schedule", SCHEDULE_SECONDS, self.schedule_snapshots),
            PeriodicTask("clients.rpo", 60.0, self.check_rpo),
            PeriodicTask("clients.holds", 300.0, self.reconcile_holds),
            PeriodicTask("browse.sweep", 60.0, self.sweep_browse_clones),
            PeriodicTask("alerts.pool", 30.0, self.check_pool),  # a degraded pool is alerted within a minute
            PeriodicTask("alerts.snoozes", 30.0, self.expire_snoozes),
            PeriodicTask("reports.history", 60.0, self.record_history),
            PeriodicTask("reports.mail", 300.0, self.mail_reports),
            PeriodicTask("offsite.schedule", SCHEDULE_SECONDS, self.schedule_offsite),
            PeriodicTask("offsite.backlog", 300.0, self.sample_offsite_backlog),
            PeriodicTask("disks.inventory", 60.0, self.refresh_disks),
            PeriodicTask("disks.smart", 1800.0, self.poll_smart),
            PeriodicTask("disks.selftests", 3600.0, self.run_selftests),
            PeriodicTask("pool.scrubs", 3600.0, self.schedule_scrub),
            *(PeriodicTask(n, i, f) for n, i, f in smb_tasks.periodic(self.store, self.zfs, self.runner)),
        ]

    def refresh_disks(self) -> None:
        if self.disks is not None:
            self.disks.refresh()

    def poll_smart(self) -> None:
        if self.disks is not None:
            self.disks.poll_smart()

    def run_selftests(self) -> None:
        if self.disks is not None:
            self.disks.run_selftests()

    def schedule_scrub(self) -> None:
        scrubs.schedule(self.store, self.zfs, self.pool_name)

    def schedule_offsite(self) -> None:
        if offsite_jobs.tick(self.store):
            self.wake.set()

    def sample_offsite_backlog(self) -> None:
        offsite_jobs.sample_all(self.store, self.zfs)

    def record_history(self) -> None:
        history.sample(self.store, self.zfs)

    def mail_reports(self) -> None:
        report_schedule.send_due(self.store)

    def check_pool(self) -> None:
        health.check_pool(self.store, self.zfs, self.pool_name)

    def expire_snoozes(self) -> None:
        alerts.expire_snoozes(self.store)
        outbox.forget_old(self.store)

    def _deliver(self) -> None:
        """Deliver the outbox (its own thread: a slow mail server never delays the periodic tasks)."""
        try:
            while not self.stop_event.is_set():
                try:
                    delivery.deliver_due(self.store)
                except Exception:
                    log.exception("alert delivery crashed; trying again")
                self.stop_event.wait(DELIVERY_POLL)
        finally:
            self.store.close_thread()

    def check_rpo(self) -> None:
        rpo.check_all(self.store, self.zfs)

    def reconcile_holds(self) -> None:
        """Release the holds of expired immutability locks; restore holds a crash left missing."""
        points.reconcile_holds(self.store, self.zfs)

    def sweep_browse_clones(self) -> None:
        browse.sweep(self.store, self.zfs)

    def schedule_snapshots(self) -> None:
        if scheduler.tick(self.store):
            self.wake.set()

    def heartbeat(self) -> None:
        self.store.set_setting(
            HEARTBEAT_KEY,
            {
                "pid": os.getpid(),
                "at": time.time(),
                "started_at": self.started_at,
                "running_commands": [c.to_dict() for c in self.runner.running()],
            },
        )

    def sample_pool(self) -> None:
        pool_service.record_sample(self.store, pools.get_pool(self.zfs, self.pool_name))

    def start(self) -> None:
        self.started_at = time.time()
        recovered = queue.recover(self.store)
        if recovered:
            log.warning("recovered %d interrupted job(s): %s", len(recovered), recovered)
        try:  # ZFS is the source of truth: re-derive clients, fix holds, drop stale clones
            reconcile.on_daemon_start(self.store, self.zfs, recovered)
        except BulwarkError as exc:
            log.warning("reconciliation with ZFS failed (the periodic tasks retry parts of it): %s", exc)
        if resent := outbox.recover(self.store, older_than=0):
            log.warning("%d notification(s) were being sent when the daemon stopped; sending them again", resent)
        for i in range(self.workers):
            worker = Worker(i, self.store, self.zfs, self.stop_event, self.wake)
            worker.start()
            self._threads.append(worker)
        scheduler = threading.Thread(target=self._schedule, name="scheduler", daemon=True)
        scheduler.start()
        self._threads.append(scheduler)
        sender = threading.Thread(target=self._deliver, name="alert-delivery", daemon=True)
        sender.start()
        self._threads.append(sender)
        runner = self.runner if isinstance(self.runner, LocalRunner) else local_runner()
        tunnel = TunnelSupervisor(self.store, runner, Paths(self.store.path.parent), self.stop_event)
        tunnel.start()  # the MSP remote-access tunnel (appliance/tunnel)
        self._threads.append(tunnel)
        self.disks = DiskService(self.store, self.zfs, self.pool_name, runner)
        self.disks.start()  # udev monitor: hot-plug reflected at once (appliance/disks/monitor.py)
        log.info("bulwarkd started: %d workers, pool %s", self.workers, self.pool_name)

    def _schedule(self) -> None:
        tasks = self.tasks()
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                for task in tasks:
                    if now >= task.next_run:
                        task.next_run = now + task.interval
                        try:
                            task.fn()
                        except BulwarkError as exc:
                            log.warning("periodic task %s failed: %s", task.name, exc)
                        except Exception:
                            log.exception("periodic task %s crashed", task.name)
                wait = min(t.next_run for t in tasks) - time.monotonic()
                self.stop_event.wait(max(0.05, wait))
        finally:
            self.store.close_thread()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every thread to stop and wait for them; running jobs are left to be recovered."""
        self.stop_event.set()
        self.wake.set()
        if self.disks is not None:
            self.disks.stop()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("thread %s did not stop in time", thread.name)
        self._threads.clear()
        self.store.set_setting(HEARTBEAT_KEY, {"pid": os.getpid(), "at": 0, "stopped_at": time.time()})
        log.info("bulwarkd stopped")

    def running_jobs(self) -> list[int]:
        return [t.current for t in self._threads if isinstance(t, Worker) and t.current is not None]


def daemon_state(store: Store) -> dict[str, object]:
    """What other processes know of the daemon: running or not, since when."""
    beat = store.get_setting(HEARTBEAT_KEY) or {}
    at = float(beat.get("at") or 0)
    alive = at > 0 and time.time() - at < HEARTBEAT_STALE
    return {
        "running": alive,
        "pid": beat.get("pid") if alive else None,
        "started_at": beat.get("started_at") if alive else None,
        "last_heartbeat": at or None,
        "running_commands": beat.get("running_commands", []) if alive else [],
    }
