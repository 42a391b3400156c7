"""The durable jobs of offsite replication, and bulwarkd's scheduler and backlog sampler for them.

* ``offsite.replicate`` — send a client's new points to a target; an interrupted attempt (a broken link, a
  restarted daemon, kill -9) is retried and resumes at the chunk where it stopped (see :mod:`upload`);
* ``offsite.verify`` — download the latest chain, check every tag, receive it into a scratch dataset and
  compare the files with the local point; the result is recorded per client.

Lock: ``offsite:<client>:<target>``, so one client's streams to one target are never sent twice at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from appliance.clients import model, service
from appliance.jobs import base, queue
from appliance.jobs.base import JobContext
from appliance.offsite import config, keys, replicate, restore, state, watch
from appliance.offsite.errors import NoDataKey
from appliance.store import Store
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.paths import Paths
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.offsite")
REPLICATE = "offsite.replicate"
VERIFY = "offsite.verify"
MAX_ATTEMPTS = 3
ACTIVE = ("queued", "running")


def _paths(store: Store) -> Paths:
    return Paths(store.path.parent)


def _params(params: dict[str, Any]) -> dict[str, Any]:
    by = params.get("created_by", "system")
    if not isinstance(by, str) or not by or len(by) > 200 or not by.isprintable():
        raise InvalidInput("created_by must be a short printable text")
    return {"client": model.check_name(params.get("client", "")), "target": config.check_name(params.get("target", "")),
            "created_by": by}  # fmt: skip


class ReplicateJob:
    name = REPLICATE
    title = "Replicate offsite"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        return _params(params)

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"offsite:{params['client']}:{params['target']}"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.job.params

        def progress(done: int, total: int, text: str) -> None:
            ctx.progress(done, total, text)

        try:  # the backlog as this run starts: the chart shows it going down to what is left after
            sample_backlog(ctx.store, ctx.zfs, p["client"], p["target"])
        except BulwarkError as exc:
            ctx.log(f"backlog not sampled: {exc.message}", "warning")
        rep = replicate.Replicator(
            ctx.store, _paths(ctx.store), ctx.zfs, p["client"], p["target"],
            progress=progress, check=ctx.check_cancelled, note=ctx.log,
        )  # fmt: skip
        report = rep.run()
        ctx.progress(1, 1, f"{len(report.streams)} stream(s) sent", force=True)
        _ran(ctx.store, p["client"], p["target"], ctx.job.id)
        sample_backlog(ctx.store, ctx.zfs, p["client"], p["target"])
        return report.to_dict()


class VerifyJob:
    name = VERIFY
    title = "Verify offsite copy"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        out = _params(params)
        out["receive"] = bool(params.get("receive", True))
        return out

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"offsite:{params['client']}:{params['target']}"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        p = ctx.job.params

        def progress(done: int, total: int, text: str) -> None:
            ctx.progress(done, total, f"checking {text}")

        result = restore.verify(ctx.store, _paths(ctx.store), ctx.zfs, p["client"], p["target"], receive=p["receive"],
                                progress=progress, check=ctx.check_cancelled)  # fmt: skip
        if not result["ok"]:
            error = result.get("error") or {}
            ctx.log(f"verification failed: {error.get('message') or result.get('areas')}", "error")
            raise VerificationFailed(p["client"], p["target"], error.get("message") or "files differ")
        return result


class VerificationFailed(BulwarkError):
    """The offsite copy of {} on {} did not verify: {}"""

    code = "offsite_verification_failed"
    exit_status = 22
    hint = "See the job's log; replicate again (a new full chain is sent when the old one is damaged)."


base.register(ReplicateJob())
base.register(VerifyJob())


def submit(store: Store, kind: str, client: str, target: str, *, by: str, **extra: Any) -> int:
    service.get_client(store, client)
    config.get_target(store, target)
    if kind == REPLICATE and keys.active_info(store) is None:
        raise NoDataKey()  # refused now rather than queued to fail: nothing is ever sent unencrypted
    return base.submit(store, kind, {"client": client, "target": target, "created_by": by, **extra},
                       created_by=by, max_attempts=MAX_ATTEMPTS if kind == REPLICATE else 1)  # fmt: skip


def active_job(store: Store, client: str, target: str) -> int | None:
    row = store.query_one(
        "SELECT id FROM jobs WHERE resource = ? AND state IN ('queued', 'running') ORDER BY id LIMIT 1",
        (f"offsite:{client}:{target}",),
    )
    return int(row["id"]) if row else None


def _ran(store: Store, client: str, target: str, job_id: int) -> None:
    policy = config.get_policy(store, client, target)
    now = time.time()
    with store.write() as tx:
        tx.execute(
            "UPDATE offsite_policies SET last_run_at = ?, next_run_at = ?, last_job_id = ?"
            " WHERE client = ? AND target = ?",
            (now, now + policy.interval_s, job_id, client, target),
        )


def tick(store: Store, now: float | None = None) -> list[int]:
    """Queue the replication of every enabled policy that is due (at most one job per client and target)."""
    at = time.time() if now is None else now
    queued = []
    for policy in config.list_policies(store):
        if not policy.enabled or (policy.next_run_at or 0) > at or active_job(store, policy.client, policy.target):
            continue
        try:
            job = submit(store, REPLICATE, policy.client, policy.target, by="schedule")
        except BulwarkError as exc:
            log.warning("offsite replication of %s to %s not queued: %s", policy.client, policy.target, exc)
            continue
        with store.write() as tx:
            tx.execute("UPDATE offsite_policies SET next_run_at = ?, last_job_id = ? WHERE client = ? AND target = ?",
                       (at + policy.interval_s, job, policy.client, policy.target))  # fmt: skip
        queued.append(job)
    return queued


def sample_backlog(store: Store, zfs: ZfsHost, client: str, target: str, now: float | None = None) -> int:
    pending = replicate.backlog_bytes(store, zfs, client, target)
    with store.write() as tx:
        tx.execute(
            "INSERT OR REPLACE INTO offsite_backlog_samples (client, target, at, pending_bytes) VALUES (?, ?, ?, ?)",
            (client, target, time.time() if now is None else now, pending),
        )
        tx.execute("DELETE FROM offsite_backlog_samples WHERE at < ?", (time.time() - 90 * 86400,))
    return pending


def sample_all(store: Store, zfs: ZfsHost) -> None:
    """Record every policy's backlog and check it is on schedule (bulwarkd, every few minutes)."""
    watch.check_stale(store)
    for policy in config.list_policies(store):
        try:
            sample_backlog(store, zfs, policy.client, policy.target)
        except BulwarkError as exc:
            log.warning("offsite backlog of %s to %s not sampled: %s", policy.client, policy.target, exc)


def overview(store: Store) -> list[dict[str, Any]]:
    """Per client and target: policy, backlog (bytes, ETA at the observed rate), last stream, last verification,
    the running job."""
    out = []
    pairs = {(p.client, p.target) for p in config.list_policies(store)}
    pairs |= {(r["client"], r["target"]) for r in store.query("SELECT DISTINCT client, target FROM offsite_streams")}
    known = {t.name for t in config.list_targets(store)}
    for client, target in sorted(pairs):
        if target not in known:
            continue
        policy = config.get_policy(store, client, target)
        row = store.query_one(
            "SELECT at, pending_bytes FROM offsite_backlog_samples WHERE client = ? AND target = ? ORDER BY at DESC"
            " LIMIT 1", (policy.client, policy.target),
        )  # fmt: skip
        rate = state.observed_rate(store, policy.target)
        pending = int(row["pending_bytes"]) if row else None
        complete = state.streams(store, policy.target, policy.client, state="complete")
        job_id = active_job(store, policy.client, policy.target)
        job = queue.get(store, job_id).to_dict() if job_id else None
        out.append({
            **policy.to_dict(),
            "backlog_bytes": pending,
            "backlog_sampled_at": row["at"] if row else None,
            "rate_bytes_per_s": rate,
            "eta_seconds": (pending / rate) if pending is not None and rate else None,
            "last_stream": complete[-1].to_dict() if complete else None,
            "streams": len(complete),
            "stored_bytes": sum(r.stored_bytes for r in complete),
            "verification": restore.last_verification(store, policy.client, policy.target),
            "job": job,
        })  # fmt: skip
    return out


def backlog_history(store: Store, client: str, target: str, since: float) -> list[tuple[float, int]]:
    rows = store.query(
        "SELECT at, pending_bytes FROM offsite_backlog_samples WHERE client = ? AND target = ? AND at >= ? ORDER BY at",
        (client, target, since),
    )
    return [(r["at"], r["pending_bytes"]) for r in rows]
