"""Client shares: one SMB share and one SMB account per client of kind ``smb`` or ``both``.

The share is ``\\\\appliance\\<client>`` on the client's ``share`` dataset, owned by the client's account with mode
0700 and open to that account only. Share options (encryption, comment) are kept in the settings table under
``smb.share.<client>``; appliance-wide SMB settings under ``smb``. Every change is first built into a whole new
smb.conf and checked (our validation, then testparm); only a configuration that passes is saved and installed,
so a refused change leaves both the database and smb.conf as they were.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from appliance.clients import service
from appliance.clients.model import Client
from appliance.samba import accounts, conf, server, versions
from appliance.samba.conf import Layout, ShareSpec
from appliance.store import Store
from appliance.system.errors import InvalidInput, NotFound
from appliance.system.runner import Runner
from appliance.zfs import datasets
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.samba")

SETTINGS_KEY = "smb"
SHARE_KEY = "smb.share."
DEFAULT_QUIET = 300


@dataclass(frozen=True)
class SmbSettings:
    """Appliance-wide SMB settings."""

    port: int = 445
    interfaces: tuple[str, ...] = ()
    min_protocol: str = "SMB2_10"
    quiet_seconds: int = DEFAULT_QUIET  # a share quiet this long after writes gets a recovery point
    account_prefix: str = accounts.DEFAULT_PREFIX

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interfaces": list(self.interfaces)}


@dataclass(frozen=True)
class ShareOptions:
    encrypt: bool = False
    comment: str = ""
    previous_versions: bool = True


def load_settings(store: Store) -> SmbSettings:
    raw = store.get_setting(SETTINGS_KEY) or {}
    return SmbSettings(
        port=int(raw.get("port", 445)),
        interfaces=tuple(raw.get("interfaces", ())),
        min_protocol=str(raw.get("min_protocol", "SMB2_10")),
        quiet_seconds=int(raw.get("quiet_seconds", DEFAULT_QUIET)),
        account_prefix=str(raw.get("account_prefix", accounts.DEFAULT_PREFIX)),
    )


def layout(store: Store, settings: SmbSettings | None = None) -> Layout:
    s = settings or load_settings(store)
    return Layout(Path(store.path).parent / "samba", port=s.port, interfaces=s.interfaces, min_protocol=s.min_protocol)


def share_options(store: Store, client: str) -> ShareOptions:
    raw = store.get_setting(SHARE_KEY + client) or {}
    return ShareOptions(
        encrypt=bool(raw.get("encrypt", False)),
        comment=str(raw.get("comment", "")),
        previous_versions=bool(raw.get("previous_versions", True)),
    )


def has_share(client: Client) -> bool:
    return client.active and client.kind in ("smb", "both")


def clients_dir(store: Store, zfs: ZfsHost) -> str:
    ds = datasets.get_dataset(zfs, service.clients_root(store))
    if ds.mountpoint is None or not ds.mounted:
        raise NotFound(f"a mounted clients tree ({ds.name})")
    return ds.mountpoint


def share_path(zfs: ZfsHost, client: Client) -> str:
    ds = datasets.get_dataset(zfs, client.area_dataset("share"))
    if ds.mountpoint is None or not ds.mounted:
        raise NotFound(f"a mounted share dataset for client {client.name} ({ds.name})")
    return ds.mountpoint


def spec_for(store: Store, zfs: ZfsHost, client: Client, opts: ShareOptions | None = None) -> ShareSpec:
    o = opts or share_options(store, client.name)
    prefix = load_settings(store).account_prefix
    path = share_path(zfs, client)
    snapdir = versions.snapdir(zfs, client) if o.previous_versions else None
    return ShareSpec(
        name=client.name,
        path=path,
        account=accounts.account_name(client.name, prefix),
        comment=o.comment or f"Backups of {client.name}",
        encrypt=o.encrypt,
        shadow=snapdir is not None,
        snapdir=snapdir,
    )


def config_text(store: Store, zfs: ZfsHost, overrides: dict[str, ShareOptions] | None = None) -> str:
    """The smb.conf the appliance's data describes now (with some share options replaced, to try a change)."""
    from appliance.samba import restore_share

    specs = [
        spec_for(store, zfs, c, (overrides or {}).get(c.name)) for c in service.list_clients(store) if has_share(c)
    ]
    specs += [r for c in service.list_clients(store) if has_share(c) and (r := restore_share.spec(store, zfs, c))]
    return conf.render(conf.build(layout(store), specs, clients_dir(store, zfs)))


def ensure_accounts(store: Store, zfs: ZfsHost, runner: Runner) -> None:
    """Every share's Unix account exists and owns its share directory (mode 0700)."""
    prefix = load_settings(store).account_prefix
    for client in service.list_clients(store):
        if not has_share(client):
            continue
        name = accounts.account_name(client.name, prefix)
        uid = accounts.ensure_unix(runner, name)
        path = share_path(zfs, client)
        st = os.stat(path)
        if st.st_uid != uid or (st.st_mode & 0o777) != 0o700:
            os.chown(path, uid, -1)
            os.chmod(path, 0o700)


def prune_accounts(store: Store, runner: Runner) -> list[str]:
    """Remove the SMB accounts (behind this appliance's prefix) of clients that no longer have a share."""
    lay = layout(store)
    if not lay.conf.exists():
        return []
    prefix = load_settings(store).account_prefix
    wanted = {accounts.account_name(c.name, prefix) for c in service.list_clients(store) if has_share(c)}
    stale = sorted(a for a in accounts.listed(runner, lay) if a.startswith(prefix) and a not in wanted)
    for name in stale:
        accounts.remove(runner, lay, name)
        log.info("removed SMB account %s (its client has no share any more)", name)
    return stale


def apply(store: Store, zfs: ZfsHost, runner: Runner) -> bool:
    """Make smb.conf and the accounts match the data, and tell a running smbd. Returns whether smb.conf changed."""
    ensure_accounts(store, zfs, runner)
    lay = layout(store)
    changed = server.install(runner, lay, config_text(store, zfs))
    if changed:
        server.reload(lay, runner)
        prune_accounts(store, runner)
    return changed


def set_share_options(
    store: Store, zfs: ZfsHost, runner: Runner, name: str, *, by: str, **changes: Any
) -> ShareOptions:
    """Change a client's share options; checked as a whole new smb.conf first (nothing changes if refused)."""
    client = service.get_client(store, name)
    if not has_share(client):
        raise InvalidInput(f"client {name!r} has no SMB share (its kind is {client.kind})")
    unknown = set(changes) - {"encrypt", "comment", "previous_versions"}
    if unknown:
        raise InvalidInput(f"unknown share option {sorted(unknown)[0]!r}")
    if "comment" in changes:
        conf.check_comment(changes["comment"])
    for flag in ("encrypt", "previous_versions"):
        if flag in changes and not isinstance(changes[flag], bool):
            raise InvalidInput(f"{flag} must be true or false")
    new = replace(share_options(store, name), **changes)
    text = config_text(store, zfs, {name: new})
    server.testparm_text(runner, layout(store), text)
    store.set_setting(SHARE_KEY + name, asdict(new))
    store.audit(by, "smb.share.update", name, **{k: str(v) for k, v in changes.items()})
    apply(store, zfs, runner)
    return new


def update_settings(store: Store, zfs: ZfsHost | None, runner: Runner, *, by: str, **changes: Any) -> SmbSettings:
    current = load_settings(store)
    if "port" in changes:
        conf.check_port(changes["port"])
    if "quiet_seconds" in changes and (not isinstance(changes["quiet_seconds"], int) or changes["quiet_seconds"] < 10):
        raise InvalidInput("the quiet time must be at least 10 seconds")
    if "account_prefix" in changes:
        conf.check_account(changes["account_prefix"] + "x")
    if "interfaces" in changes:
        changes["interfaces"] = tuple(changes["interfaces"])
    unknown = set(changes) - set(SmbSettings.__dataclass_fields__)
    if unknown:
        raise InvalidInput(f"unknown SMB setting {sorted(unknown)[0]!r}")
    new = replace(current, **changes)
    conf.global_section(layout(store, new))  # validates the protocol, port and interfaces
    store.set_setting(SETTINGS_KEY, new.to_dict())
    store.audit(by, "smb.settings", None, **{k: str(v) for k, v in changes.items()})
    if zfs is not None:
        apply(store, zfs, runner)
    return new


def set_password(store: Store, zfs: ZfsHost, runner: Runner, name: str, password: str | None, *, by: str) -> str:
    """Set (or generate, when ``password`` is None) the client's SMB password; returns it (shown once)."""
    client = service.get_client(store, name)
    if not has_share(client):
        raise InvalidInput(f"client {name!r} has no SMB share (its kind is {client.kind})")
    secret = accounts.check_password(password) if password is not None else accounts.generate_password()
    apply(store, zfs, runner)
    account = accounts.account_name(name, load_settings(store).account_prefix)
    accounts.set_password(runner, layout(store), account, secret)
    store.audit(by, "smb.password", name, generated=str(password is None))
    return secret


def connection(store: Store, client: Client, hostname: str) -> dict[str, Any]:
    """What a person types on the client machine."""
    s = load_settings(store)
    unc = f"\\\\{hostname}\\{client.name}"
    return {
        "unc": unc,
        "url": f"smb://{hostname}{'' if s.port == 445 else f':{s.port}'}/{client.name}",
        "user": accounts.account_name(client.name, s.account_prefix),
        "port": s.port,
        "encrypt": share_options(store, client.name).encrypt,
    }


def remove_account(store: Store, runner: Runner, name: str) -> None:
    """Forget a client's account (its share disappears at the next :func:`apply`)."""
    account = accounts.account_name(name, load_settings(store).account_prefix)
    accounts.remove(runner, layout(store), account)
