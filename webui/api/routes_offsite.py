"""API: offsite replication — keys and the recovery kit, targets, policies, per-client state, run and verify."""

from __future__ import annotations

from typing import Any

from flask import request
from spectree import Response

from appliance.offsite import config, jobs, keys, kit
from webui import state
from webui.api import bp, spec
from webui.api.schemas import Done, ErrorBody
from webui.api.schemas_offsite import (
    ClientOffsite,
    JobQueued,
    KeyOut,
    KitOut,
    OffsiteStatus,
    PassphraseIn,
    PolicyIn,
    PolicyOut,
    RunIn,
    TargetIn,
    TargetName,
    TargetOut,
    VerifyIn,
)
from webui.permissions import requires

ERRORS = {"HTTP_400": ErrorBody, "HTTP_401": ErrorBody, "HTTP_403": ErrorBody, "HTTP_404": ErrorBody}
CHANGE = {**ERRORS, "HTTP_409": ErrorBody}


def _body() -> Any:
    return request.context.json  # type: ignore[attr-defined]


@bp.route("/offsite", methods=["GET"])
@requires("view")
@spec.validate(resp=Response(HTTP_200=OffsiteStatus, **ERRORS), tags=["offsite"])
def offsite_status() -> Any:
    """Keys, targets, and per client and target: policy, backlog with ETA, last stream, last verification, job."""
    store = state.store()
    found = keys.list_keys(store)
    return OffsiteStatus(
        keys=[KeyOut.model_validate(k.to_dict()) for k in found],
        kit_exported=bool(found) and all(k.kit_exported_at is not None for k in found),
        targets=[TargetOut.model_validate(t.to_dict()) for t in config.list_targets(store)],
        clients=[ClientOffsite.model_validate(r) for r in jobs.overview(store)],
    )


@bp.route("/offsite/keys", methods=["POST"])
@requires("keys.manage")
@spec.validate(json=PassphraseIn, resp=Response(HTTP_200=KeyOut, **CHANGE), tags=["offsite"])
def offsite_key_init() -> Any:
    """Create the data key (once); the passphrase wraps it in the recovery kit and is not stored."""
    info = keys.init_key(state.store(), state.paths(), _body().passphrase)
    state.audit("offsite.key.init", info.id)
    return KeyOut.model_validate(info.to_dict())


@bp.route("/offsite/keys/rotate", methods=["POST"])
@requires("keys.manage")
@spec.validate(json=PassphraseIn, resp=Response(HTTP_200=KeyOut, **CHANGE), tags=["offsite"])
def offsite_key_rotate() -> Any:
    """A new data key for new streams (the same passphrase as the kit's)."""
    info = keys.rotate(state.store(), state.paths(), _body().passphrase)
    state.audit("offsite.key.rotate", info.id)
    return KeyOut.model_validate(info.to_dict())


@bp.route("/offsite/kit", methods=["POST"])
@requires("keys.manage")
@spec.validate(resp=Response(HTTP_200=KitOut, **CHANGE), tags=["offsite"])
def offsite_kit() -> Any:
    """The recovery kit as text (every data key wrapped by the passphrase, plus its printable form)."""
    hostname = state.appliance_settings().hostname
    document = keys.kit_document(state.store(), hostname)
    keys.mark_exported(state.store())
    state.audit("offsite.key.export_kit", None, keys=len(document["keys"]))
    return KitOut(filename=f"bulwark-recovery-kit-{hostname}.txt", kit=kit.render(document),
                  keys=[k["key_id"] for k in document["keys"]])  # fmt: skip


@bp.route("/offsite/targets", methods=["POST"])
@requires("offsite.manage")
@spec.validate(json=TargetIn, resp=Response(HTTP_200=TargetOut, **CHANGE), tags=["offsite"])
def offsite_target_add() -> Any:
    """Add a local, SFTP (pinned host key) or S3 target."""
    body: TargetIn = _body()
    raw = body.model_dump(exclude={"name", "type", "secret", "keep_chains"})
    record = config.add_target(state.store(), body.name, body.type, raw, body.secret, keep_chains=body.keep_chains,
                               by=state.actor())  # fmt: skip
    return TargetOut.model_validate(record.to_dict())


@bp.route("/offsite/targets/remove", methods=["POST"])
@requires("offsite.manage")
@spec.validate(json=TargetName, resp=Response(HTTP_200=Done, **CHANGE), tags=["offsite"])
def offsite_target_remove() -> Any:
    """Forget a target (what it holds is not deleted)."""
    config.remove_target(state.store(), _body().name, by=state.actor())
    return Done()


@bp.route("/offsite/policies", methods=["PATCH"])
@requires("offsite.manage")
@spec.validate(json=PolicyIn, resp=Response(HTTP_200=PolicyOut, **CHANGE), tags=["offsite"])
def offsite_policy() -> Any:
    """A client's schedule, chain limits and bandwidth windows for one target (fields left out are kept)."""
    body: PolicyIn = _body()
    kbps: int | None | str = body.default_kbps if "default_kbps" in body.model_fields_set else "keep"
    policy = config.set_policy(
        state.store(), body.client, body.target, by=state.actor(), enabled=body.enabled,
        interval_s=body.interval_s, chain_length=body.chain_length, chain_age_s=body.chain_age_s,
        bandwidth_rules=body.bandwidth, default_kbps=kbps,
    )  # fmt: skip
    return PolicyOut.model_validate(policy.to_dict())


@bp.route("/offsite/<client>/run", methods=["POST"])
@requires("jobs.run")
@spec.validate(json=RunIn, resp=Response(HTTP_200=JobQueued, **CHANGE), tags=["offsite"])
def offsite_run(client: str) -> Any:
    """Queue the replication of the client's new recovery points to the target."""
    job = jobs.submit(state.store(), jobs.REPLICATE, client, _body().target, by=state.actor())
    state.audit(jobs.REPLICATE, client, offsite_target=_body().target, job=job)
    return JobQueued(job=job)


@bp.route("/offsite/<client>/verify", methods=["POST"])
@requires("jobs.run")
@spec.validate(json=VerifyIn, resp=Response(HTTP_200=JobQueued, **CHANGE), tags=["offsite"])
def offsite_verify(client: str) -> Any:
    """Queue a verification drill: download, authenticate, and (receive) restore into a scratch dataset."""
    body: VerifyIn = _body()
    job = jobs.submit(state.store(), jobs.VERIFY, client, body.target, by=state.actor(), receive=body.receive)
    state.audit(jobs.VERIFY, client, offsite_target=body.target, job=job)
    return JobQueued(job=job)
