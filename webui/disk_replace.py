"""The guided disk replacement, on the Disks blueprint: pick the failed disk, find it (its bay's locate LED
when a hardware profile matches, else its serial number), pick the new disk, ``zpool replace``, follow the
resilver on the job page."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from werkzeug.wrappers import Response

from appliance.disks import bays, inventory, overview, replace
from appliance.disks.inventory import Disk
from appliance.jobs import base
from appliance.system.errors import BulwarkError, InvalidInput, NotFound
from appliance.system.runner import local_runner
from appliance.zfs import status
from webui import state
from webui.disks import bp
from webui.permissions import requires
from webui.render import render


def _context(old: str | None) -> dict[str, Any]:
    pool = state.appliance_settings().pool.name
    pool_status = status.pool_status(state.zfs(), pool)
    disks = inventory.scan(None, inventory.memberships([pool_status]))
    rows = {r["name"]: r for r in overview.disks(state.store(), None, None)}
    by_leaf: dict[str, Disk] = {}
    for disk in disks:
        for leaf in replace.leaf_names(pool_status):
            if disk.pool is not None and inventory.memberships([pool_status]).get(leaf) == disk.pool:
                by_leaf.setdefault(leaf, disk)
    leaves: list[dict[str, Any]] = [
        {
            "name": v.name,
            "state": v.state,
            "errors": v.read_errors + v.write_errors + v.checksum_errors,
            "disk": by_leaf.get(v.name),
            "smart": (rows.get(by_leaf[v.name].name) or {}).get("smart") if v.name in by_leaf else None,
        }
        for v in pool_status.devices()
        if v.group not in ("cache", "spares")
    ]
    try:
        profile = bays.find_profile()
        profile_error = None
    except BulwarkError as exc:
        profile, profile_error = None, exc.message
    chosen = next((leaf for leaf in leaves if leaf["name"] == old), None) if old else None
    if old and chosen is None:
        raise NotFound(f"device {old!r} in pool {pool}")
    old_disk: Disk | None = chosen["disk"] if chosen else None
    new_disks = replace.candidates(disks, pool_status)
    if old_disk is not None and old_disk.size_bytes:
        new_disks = [d for d in new_disks if d.size_bytes >= old_disk.size_bytes]
    return {
        "pool_name": pool,
        "pool_state": pool_status.state,
        "scan": pool_status.scan,
        "leaves": leaves,
        "chosen": chosen,
        "old_disk": old_disk,
        "bay": bays.bay_of(profile, old_disk) if old_disk else None,
        "profile": profile,
        "profile_error": profile_error,
        "candidates": new_disks,
    }


@bp.route("/replace")
@requires("disks.replace")
def replace_wizard() -> Any:
    return render("disk_replace.html", None, **_context(request.args.get("old") or None))


@bp.route("/replace/led", methods=["POST"])
@requires("disks.replace")
def replace_led() -> Response:
    old = request.form.get("old", "")
    action = request.form.get("action", "")
    if action not in ("locate_on", "locate_off"):
        raise InvalidInput(f"an LED action is locate_on or locate_off, not {action!r}")
    ctx = _context(old)
    disk = ctx["old_disk"]
    if disk is None:
        raise NotFound(f"a disk behind pool device {old!r} (a file or a missing disk has no bay)")
    bays.set_led(local_runner(), ctx["profile"], action, disk)
    state.audit("disk.led", disk.name, led=action)
    flash(f"Locate LED of {disk.name} {'on' if action == 'locate_on' else 'off'}.")
    return redirect(url_for("disks.replace_wizard", old=old))


@bp.route("/replace", methods=["POST"])
@requires("disks.replace")
def replace_start() -> Response:
    old, new = request.form.get("old", ""), request.form.get("new", "")
    if request.form.get("confirm") != "yes":
        raise InvalidInput("tick the box confirming that everything on the new disk may be overwritten")
    ctx = _context(old)
    offered = {d.node: d for d in ctx["candidates"]}
    if new not in offered:
        raise InvalidInput(f"{new!r} is not one of the disks offered as a replacement (unused and large enough)")
    old_disk = ctx["old_disk"]
    params = {"pool": ctx["pool_name"], "old": old, "new": new}
    if old_disk is not None and ctx["profile"] is not None and ctx["profile"].has_led("locate_off"):
        params["led_node"] = old_disk.node
    job_id = base.submit(state.store(), "pool.replace", params, created_by=state.actor())
    state.audit("pool.replace", ctx["pool_name"], old=old, new=new, job=job_id)
    return redirect(url_for("jobs.show", job_id=job_id))
