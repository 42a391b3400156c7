"""Offsite alerts: a failed verification drill (critical), and a client whose offsite copy falls behind its
schedule (warning: no complete stream for two intervals while the policy is enabled)."""

from __future__ import annotations

import time

from appliance import alerts
from appliance.offsite import config, state
from appliance.store import Store
from appliance.system.durations import format_duration

VERIFY_FAILED = alerts.declare(
    "offsite.verify_failed",
    level="critical",
    category="offsite",
    title="Offsite copy failed verification",
    template="The offsite copy of {client} on {target} failed verification: {error}",
)
STALE = alerts.declare(
    "offsite.stale",
    level="warning",
    category="offsite",
    title="Offsite copy behind schedule",
    template="{client} has sent nothing complete to {target} for {behind} (schedule: every {every})",
)


def verify_key(client: str, target: str) -> str:
    return f"offsite:verify:{client}:{target}"


def stale_key(client: str, target: str) -> str:
    return f"offsite:stale:{client}:{target}"


def verified(store: Store, client: str, target: str, ok: bool, error: str) -> None:
    if ok:
        alerts.clear(store, verify_key(client, target))
    else:
        alerts.fire(store, VERIFY_FAILED, verify_key(client, target), subject=f"client:{client}", client=client,
                    target=target, error=error)  # fmt: skip


def check_stale(store: Store, now: float | None = None) -> list[str]:
    """Raise or clear ``offsite.stale`` for every policy (bulwarkd, every few minutes); the keys raised."""
    at = time.time() if now is None else now
    raised = []
    for policy in config.list_policies(store):
        key = stale_key(policy.client, policy.target)
        complete = state.streams(store, policy.target, policy.client, state="complete")
        last = max((r.completed_at or 0 for r in complete), default=None)
        since = last if last is not None else (policy.last_run_at or policy.next_run_at or at)
        if policy.enabled and at - since > 2 * policy.interval_s:
            alerts.fire(
                store, STALE, key, subject=f"client:{policy.client}", client=policy.client, target=policy.target,
                behind=format_duration(at - since), every=format_duration(policy.interval_s),
            )  # fmt: skip
            raised.append(key)
        else:
            alerts.clear(store, key)
    return raised
