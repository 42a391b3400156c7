"""A SMART self-test as a durable job: start it inside the drive, follow its progress (smartctl reports the
percentage remaining) to the end, then record the reading so the verdict and alerts see the result.

The test runs inside the drive and cannot be cancelled from here: cancelling the job stops following it.
After a daemon restart the job follows the test it started instead of starting another.
"""

from __future__ import annotations

from typing import Any

from appliance.disks import inventory, polling, smartctl
from appliance.disks.inventory import Disk
from appliance.disks.smart import SelfTest
from appliance.jobs import base
from appliance.jobs.base import JobContext
from appliance.system.errors import Conflict, InvalidInput
from appliance.system.runner import local_runner

# How often the drive is asked how far it got (a short test takes ~2 minutes, a long one hours).
POLL_SECONDS = {"short": 10.0, "long": 60.0}


def find_disk(node: str) -> Disk:
    """The inventory's view of ``node``, or a bare one (a disk behind a RAID controller is not in it)."""
    found = next((d for d in inventory.scan() if d.node == node), None)
    return found or Disk(node.rsplit("/", 1)[-1], node, "", "", "", 0, None, "")


def newest_of_kind(tests: list[SelfTest], kind: str) -> SelfTest | None:
    """The drive's newest log entry for this kind of test (logs list the newest first)."""
    words = ("short",) if kind == "short" else ("extended", "long")
    return next((t for t in tests if any(w in t.kind.lower() for w in words)), None)


class SelfTestJob:
    name = "disk.selftest"
    title = "Disk self-test"
    poll_seconds: float | None = None  # None: by kind (POLL_SECONDS)

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if set(params) - {"device", "kind"} or not {"device", "kind"} <= set(params):
            raise InvalidInput("a self-test takes exactly: device and kind")
        if params["kind"] not in smartctl.TEST_KINDS:
            raise InvalidInput(f"a self-test is short or long, not {params['kind']!r}")
        return {"device": smartctl.check_device(params["device"]), "kind": params["kind"]}

    def resource(self, params: dict[str, Any]) -> str | None:
        return f"disk:{params['device']}:selftest"

    def run(self, ctx: JobContext) -> dict[str, Any]:
        runner = local_runner()
        node, kind = ctx.job.params["device"], ctx.job.params["kind"]
        disk = find_disk(node)
        if not ctx.job.params.get("started"):
            before = smartctl.read(runner, node)
            if before.self_test_running is not None:
                raise Conflict(
                    f"{node} is already running a self-test ({before.self_test_running}% left); "
                    "wait for it to finish or follow it on the disk's page"
                )
            error = polling.start_test(ctx.store, runner, disk, kind, by=ctx.job.created_by or "job")
            if error:
                raise Conflict(f"{node} did not start a {kind} self-test: {error}")
            ctx.remember(started=True)
            ctx.log(f"{kind} self-test started on {node}")
        else:
            ctx.log("following the self-test started before the daemon restarted")
        wait = self.poll_seconds if self.poll_seconds is not None else POLL_SECONDS[kind]
        while True:
            report = smartctl.read(runner, node)
            remaining = report.self_test_running
            if remaining is None:
                break
            done = max(0, min(100, 100 - remaining))
            ctx.progress(done, 100, f"{kind} self-test, {remaining}% left", force=True)
            ctx.sleep(wait)
        reading = polling.read_disk(runner, disk)
        polling.record(ctx.store, reading)
        ctx.progress(100, 100, "finished", force=True)
        newest = newest_of_kind(report.self_tests, kind)
        if newest is not None and newest.passed is False:
            ctx.log(f"the self-test failed: {newest.status}; the disk is {reading.verdict.verdict}", "error")
        else:
            outcome = newest.status if newest else "no entry in the self-test log"
            ctx.log(f"self-test ended: {outcome}; the disk is {reading.verdict.verdict}")
        return {
            "device": node,
            "kind": kind,
            "status": newest.status if newest else "",
            "passed": newest.passed if newest else None,
            "verdict": reading.verdict.verdict,
            "reasons": reading.verdict.sorted_reasons(),
        }


base.register(SelfTestJob())
