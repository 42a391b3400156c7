"""What the UI, the API and the CLI show of SMB: the server, the settings, each client's share."""

from __future__ import annotations

from typing import Any

from appliance.clients import points, service
from appliance.clients.model import Client
from appliance.samba import activity, restore_share, shares, supervise
from appliance.store import Store
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.runner import Runner
from appliance.zfs.host import ZfsHost


def share_info(store: Store, client: Client, hostname: str) -> dict[str, Any]:
    if not shares.has_share(client):
        raise InvalidInput(f"client {client.name!r} has no SMB share (its kind is {client.kind})")
    opts = shares.share_options(store, client.name)
    return {
        "client": client.name,
        **shares.connection(store, client, hostname),
        "comment": opts.comment,
        "previous_versions": opts.previous_versions,
    }


def share_detail(store: Store, zfs: ZfsHost, runner: Runner, name: str, hostname: str) -> dict[str, Any]:
    """A client's share with what is happening on it now, and its points taken while files were open."""
    client = service.get_client(store, name)
    out = share_info(store, client, hostname)
    out["open_files"], out["marked_points"], out["versions"], out["share_points"] = [], {}, 0, []
    entry = restore_share.published(store, name)
    out["restore_share"] = (
        {"share": restore_share.share_name(name), "point": entry["point"], "unc": f"\\\\{hostname}\\{name}-restore"}
        if entry
        else None
    )
    try:
        path = shares.share_path(zfs, client)
        files = activity.open_on(activity.open_files(runner, shares.layout(store)), path)
        out["open_files"] = [{"name": f.name, "writing": f.writing} for f in files]
        out["marked_points"] = activity.open_files_marks(zfs, client)
        out["share_points"] = [p.id for p in points.scan(zfs, client).points if p.area == "share"]
        out["versions"] = len(out["share_points"])
    except BulwarkError as exc:
        out["problem"] = exc.to_dict()
    quiet = activity.quiet_state(store, name)
    out["last_change_at"] = quiet.get("changed_at")
    out["quiet_seconds"] = shares.load_settings(store).quiet_seconds
    return out


def overview(store: Store, hostname: str) -> dict[str, Any]:
    rows = [share_info(store, c, hostname) for c in service.list_clients(store) if shares.has_share(c)]
    return {"server": supervise.state(store), "settings": shares.load_settings(store).to_dict(), "shares": rows}
