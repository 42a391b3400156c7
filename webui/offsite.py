"""Offsite: the data key with its "download your recovery kit" step, targets, per-client replication state with
backlog, ETA, progress bars and a backlog chart, policies, and replicate / verify now."""

from __future__ import annotations

import datetime
import time
from typing import Any

from flask import Blueprint, Response, make_response, redirect, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from appliance.clients import service as clients
from appliance.offsite import config, jobs, keys, kit
from appliance.system.durations import parse_duration
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.zfs import units
from webui import state
from webui.charts import HEIGHT, LEFT, RIGHT, TOP, WIDTH, LineChart, Tick, _nice_step
from webui.permissions import requires
from webui.render import render

bp = Blueprint("offsite", __name__, url_prefix="/offsite")
BOTTOM = 28.0
TARGET_FIELDS = ("path", "host", "port", "user", "host_key", "bucket", "endpoint", "region", "prefix",
                 "access_key", "lock_days")  # fmt: skip


def backlog_chart(samples: list[tuple[float, int]], zone: datetime.tzinfo) -> LineChart:
    """Bytes waiting to go offsite over time."""
    if len(samples) < 2:
        return LineChart(summary="Not enough history yet: the backlog is sampled every 5 minutes.")
    t0, t1 = samples[0][0], samples[-1][0]
    top_value = float(max(max(v for _, v in samples), 1024 * 1024))  # a flat zero line still gets a scale
    plot_w, plot_h, span = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM, max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return round(LEFT + plot_w * (t - t0) / span, 1)

    def y(v: float) -> float:
        return round(TOP + plot_h * (1 - v / top_value), 1)

    points = [f"{x(t)},{y(v)}" for t, v in samples]
    step, v, y_ticks = _nice_step(top_value), 0.0, []
    while v <= top_value * 1.0001:
        y_ticks.append(Tick(y(v), units.format_size(int(v))))
        v += step
    fmt = "%H:%M" if span <= 2 * 86400 else "%d %b"
    x_ticks = [Tick(x(t0 + span * i / 4), datetime.datetime.fromtimestamp(t0 + span * i / 4, zone).strftime(fmt))
               for i in range(5)]  # fmt: skip
    summary = f"{units.format_size(samples[-1][1])} waiting now; {len(samples)} samples over {span / 3600:.0f} h"
    return LineChart(line=" ".join(points), area=" ".join(points + [f"{x(t1)},{y(0)}", f"{x(t0)},{y(0)}"]),
                     y_ticks=y_ticks, x_ticks=x_ticks, empty=False, summary=summary)  # fmt: skip


def _state() -> dict[str, Any]:
    store = state.store()
    rows = jobs.overview(store)
    since = time.time() - 7 * 86400
    charts = {
        (r["client"], r["target"]): backlog_chart(
            jobs.backlog_history(store, r["client"], r["target"], since), state.timezone()
        )  # fmt: skip
        for r in rows
    }
    return {"rows": rows, "charts": charts}


@bp.route("/")
@requires("view")
def index() -> Any:
    store = state.store()
    active = keys.active_info(store)
    return render(
        "offsite.html",
        "_offsite_state.html",
        keys=keys.list_keys(store),
        active=active,
        kit_missing=active is not None and active.kit_exported_at is None,
        targets=config.list_targets(store),
        clients=[c.name for c in clients.list_clients(store)],
        error=request.args.get("error"),
        notice=request.args.get("notice"),
        **_state(),
    )


@bp.route("/state")
@requires("view")
def state_partial() -> Any:
    """The per-client table alone (the page polls it while a job runs)."""
    return render("_offsite_state.html", **_state())


def _back(*, error: str | None = None, notice: str | None = None) -> WerkzeugResponse:
    return redirect(url_for("offsite.index", error=error, notice=notice))


def _fail(exc: BulwarkError) -> WerkzeugResponse:
    return _back(error=f"{exc.message} {exc.hint}")


@bp.route("/key", methods=["POST"])
@requires("keys.manage")
def key_create() -> WerkzeugResponse:
    passphrase = request.form.get("passphrase", "")
    try:
        if passphrase != request.form.get("confirm", ""):
            raise InvalidInput("the two passphrases differ")
        if request.form.get("action") == "rotate":
            info = keys.rotate(state.store(), state.paths(), passphrase)
            state.audit("offsite.key.rotate", info.id)
        else:
            info = keys.init_key(state.store(), state.paths(), passphrase)
            state.audit("offsite.key.init", info.id)
    except BulwarkError as exc:
        return _fail(exc)
    return _back(notice=f"Data key {info.id} is ready. Now download the recovery kit and keep it off the appliance.")


@bp.route("/kit", methods=["POST"])
@requires("keys.manage")
def kit_download() -> Any:
    try:
        document = keys.kit_document(state.store(), state.appliance_settings().hostname)
    except BulwarkError as exc:
        return _fail(exc)
    keys.mark_exported(state.store())
    state.audit("offsite.key.export_kit", None, keys=len(document["keys"]))
    response: Response = make_response(kit.render(document))
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    name = f"bulwark-recovery-kit-{state.appliance_settings().hostname}.txt"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/targets", methods=["POST"])
@requires("offsite.manage")
def target_add() -> WerkzeugResponse:
    form = request.form
    kind = form.get("type", "")
    raw: dict[str, Any] = {k: form.get(k) or None for k in TARGET_FIELDS}
    raw["require_mount"] = form.get("require_mount") == "on"
    try:
        for key in ("port", "lock_days"):
            if raw[key] is not None:
                raw[key] = int(raw[key])
        secret = form.get("secret") or None
        record = config.add_target(state.store(), form.get("name", ""), kind, raw, secret,
                                   keep_chains=int(form.get("keep_chains") or 2), by=state.actor())  # fmt: skip
    except ValueError:
        return _fail(InvalidInput("port, lock days and chains kept are whole numbers"))
    except BulwarkError as exc:
        return _fail(exc)
    return _back(notice=f"Target {record.name} added ({record.describe()}).")


@bp.route("/targets/remove", methods=["POST"])
@requires("offsite.manage")
def target_remove() -> WerkzeugResponse:
    try:
        config.remove_target(state.store(), request.form.get("name", ""), by=state.actor())
    except BulwarkError as exc:
        return _fail(exc)
    return _back(notice="Target removed from this appliance; nothing on it was deleted.")


@bp.route("/policy", methods=["POST"])
@requires("offsite.manage")
def policy_set() -> WerkzeugResponse:
    form = request.form
    try:
        rules = [r.strip() for r in (form.get("bandwidth") or "").splitlines() if r.strip()]
        kbps = form.get("default_kbps") or None
        config.set_policy(
            state.store(), form.get("client", ""), form.get("target", ""), by=state.actor(),
            enabled=form.get("enabled") == "on",
            interval_s=parse_duration(form.get("interval") or "1d", what="interval"),
            chain_length=int(form.get("chain_length") or config.DEFAULT_CHAIN_LENGTH),
            chain_age_s=parse_duration(form.get("chain_age") or "30d", what="chain age"),
            bandwidth_rules=rules, default_kbps=int(kbps) if kbps else None,
        )  # fmt: skip
    except ValueError:
        return _fail(InvalidInput("chain length and the bandwidth limit are whole numbers"))
    except BulwarkError as exc:
        return _fail(exc)
    return _back(notice=f"Replication of {form.get('client')} to {form.get('target')} saved.")


@bp.route("/<client>/run", methods=["POST"])
@requires("jobs.run")
def run(client: str) -> WerkzeugResponse:
    return _job(client, jobs.REPLICATE)


@bp.route("/<client>/verify", methods=["POST"])
@requires("jobs.run")
def verify(client: str) -> WerkzeugResponse:
    return _job(client, jobs.VERIFY)


def _job(client: str, kind: str) -> WerkzeugResponse:
    try:
        job = jobs.submit(state.store(), kind, client, request.form.get("target", ""), by=state.actor())
    except BulwarkError as exc:
        return _fail(exc)
    state.audit(kind, client, offsite_target=request.form.get("target"), job=job)
    return _back(notice=f"Job {job} queued.")
