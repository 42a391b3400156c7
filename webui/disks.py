"""Disks: the inventory with SMART verdicts, each disk's SMART detail with trend charts, self-tests."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.disks import overview, polling
from appliance.jobs import base
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.runner import local_runner
from webui import disk_charts, state
from webui.permissions import requires
from webui.render import render

bp = Blueprint("disks", __name__, url_prefix="/disks")
RANGES = {"1d": 1, "7d": 7, "30d": 30, "365d": 365}


def _pool() -> tuple[Any, str | None]:
    try:
        return state.zfs(), state.appliance_settings().pool.name
    except BulwarkError:
        return None, None


@bp.route("/")
@requires("view")
def index() -> Any:
    zfs, pool = _pool()
    rows, chassis = overview.layout(state.store(), zfs, pool)
    return render("disks.html", "_disks_table.html", disks=rows, chassis=chassis, pool_name=pool)


@bp.route("/<disk>")
@requires("view")
def show(disk: str) -> Any:
    zfs, pool = _pool()
    days = request.args.get("range", "30d")
    info = overview.detail(state.store(), zfs, pool, disk, days=RANGES.get(days, 30))
    charts = disk_charts.charts(info["samples"], state.timezone())
    return render("disk.html", None, **info, charts=charts, range=days, ranges=list(RANGES))


@bp.route("/<disk>/read", methods=["POST"])
@requires("jobs.run")
def read_now(disk: str) -> Response:
    reading = overview.read_now(state.store(), local_runner(), disk)
    state.audit("disk.smart_read", disk, verdict=reading.verdict.verdict)
    flash(f"SMART read from {disk}: {reading.verdict.verdict}.")
    return redirect(url_for("disks.show", disk=disk))


@bp.route("/<disk>/test", methods=["POST"])
@requires("jobs.run")
def self_test(disk: str) -> Response:
    """A self-test as a job: the job page shows its progress (the drive's percentage remaining) and result."""
    kind = request.form.get("kind", "")
    found = overview.find_disk(disk)
    if polling.skip(found):
        raise InvalidInput(f"{disk} is a loop device: it has no SMART self-test")
    job_id = base.submit(state.store(), "disk.selftest", {"device": found.node, "kind": kind}, created_by=state.actor())
    state.audit("disk.self_test", disk, kind=kind, job=job_id)
    return redirect(url_for("jobs.show", job_id=job_id))


from webui import disk_replace  # noqa: E402, F401  (the replacement wizard's routes, on this blueprint)
