"""Setting up an appliance (``bulwark init``) and bringing its pool online (``bulwark run``)."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance import users
from appliance.clients import reconcile as clients_reconcile
from appliance.store import Store
from appliance.system import settings, tls
from appliance.system.errors import AlreadyExists, InvalidInput, NotInitialized
from appliance.system.paths import Paths
from appliance.system.runner import Runner
from appliance.system.settings import ApplianceSettings, PoolConfig
from appliance.zfs import datasets, names, pools, service, units
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.provision")

DEFAULT_POOL_NAME = "bulwark"
DEFAULT_POOL_FILE_SIZE = "8G"
CLIENTS_DATASET = "clients"
ADMIN_USER = "admin"


@dataclass(frozen=True)
class InitResult:
    data_dir: Path
    pool: pools.Pool
    pool_created: bool
    admin_username: str
    admin_password: str
    cert_fingerprint: str
    zfs: str  # "kernel", "zfs-fuse" or "started"
    implementation: str
    imported_clients: tuple[str, ...] = ()  # clients found on an adopted pool


def zfs_pidfile(paths: Paths) -> Path:
    return paths.run_dir / "zfs-fuse.pid"


def connect_zfs(paths: Paths, runner: Runner) -> tuple[ZfsHost, str]:
    """Make sure ZFS runs (starting zfs-fuse if needed) and detect what it is."""
    how = service.ensure_running(runner, zfs_pidfile(paths))
    return ZfsHost.detect(runner), how


def pool_file(paths: Paths, pool_name: str) -> Path:
    return paths.pool_dir / f"{pool_name}.img"


def default_hostname() -> str:
    name = socket.gethostname().split(".")[0].lower()
    try:
        return names.component(name) if len(name) <= 63 else "bulwark"
    except InvalidInput:
        return "bulwark"


def initialize(
    paths: Paths,
    runner: Runner,
    *,
    pool_name: str = DEFAULT_POOL_NAME,
    devices: Sequence[str] = (),
    layout: str | None = None,
    pool_file_size: str = DEFAULT_POOL_FILE_SIZE,
    hostname: str | None = None,
    web_port: int = settings.DEFAULT_WEB_PORT,
    use_existing_pool: bool = False,
) -> InitResult:
    """Create the data directory, database, TLS certificate, admin account and pool.

    Everything is checked before anything is written; the database is written last, so a failure
    (a device in use, a bad name) leaves no half-initialized appliance behind."""
    names.pool_name(pool_name)
    settings.check_port(web_port)
    host_label = hostname or default_hostname()
    names.component(host_label)
    if paths.is_initialized():
        store = Store.open(paths.db)
        try:
            if settings.load(store) is not None:
                raise AlreadyExists(f"an appliance in {paths.data_dir} (already initialized)")
        finally:
            store.close()
    if devices:
        layout = layout or ("single" if len(devices) == 1 else "mirror")
        pools.vdev_args(devices, layout)  # validate before touching anything
    elif layout not in (None, "file"):
        raise InvalidInput("--layout needs --devices; without devices the pool is file-backed")
    size_arg = units.size_argument(pool_file_size)

    paths.make_dirs()
    zfs, how = connect_zfs(paths, runner)
    mountpoint = str(paths.data_dir / "mnt" / pool_name)
    created = False
    if pools.exists(zfs, pool_name):
        if not use_existing_pool:
            raise AlreadyExists(f"pool {pool_name} (pass --use-existing-pool to adopt it, or choose --pool-name)")
        pool = pools.get_pool(zfs, pool_name)
    else:
        file_path = pool_file(paths, pool_name)
        importable = {p.name for p in pools.importable_pools(zfs, [str(paths.pool_dir)] if not devices else [])}
        if pool_name in importable:
            if not use_existing_pool:
                raise AlreadyExists(f"exported pool {pool_name} (pass --use-existing-pool to import it)")
            pool = pools.import_pool(zfs, pool_name, [str(paths.pool_dir)] if not devices else [])
        elif devices:
            pool = pools.create_pool(zfs, pool_name, devices, layout=layout or "single", mountpoint=mountpoint)
            created = True
        else:
            if file_path.exists():
                raise AlreadyExists(f"pool file {file_path} (remove it or pass another --pool-name)")
            pools.make_sparse_file(zfs, str(file_path), size_arg)
            try:
                pool = pools.create_pool(zfs, pool_name, [str(file_path)], mountpoint=mountpoint)
            except BaseException:
                file_path.unlink(missing_ok=True)
                raise
            created = True
    clients = f"{pool_name}/{CLIENTS_DATASET}"
    if not datasets.exists(zfs, clients):
        datasets.create(zfs, clients, {"bulwark:role": "clients"})

    fingerprint = tls.create_self_signed(paths.tls_cert, paths.tls_key, host_label)
    _write_secret(paths.secret_key)
    store = Store.open(paths.db)
    try:
        password = users.generate_password()
        try:
            users.create_user(store, ADMIN_USER, password, "admin", must_change=True)
        except AlreadyExists:
            users.set_password(store, ADMIN_USER, password, must_change=True)
        config = ApplianceSettings(
            pool=PoolConfig(
                name=pool_name,
                layout="file" if not devices else (layout or "single"),
                devices=list(devices) or [str(pool_file(paths, pool_name))],
                mountpoint=mountpoint,
            ),
            web_port=web_port,
            hostname=host_label,
            initialized_at=time.time(),
        )
        settings.save(store, config)
        store.audit("cli", "appliance.init", pool_name, created_pool=created, zfs=zfs.caps.implementation)
        imported: tuple[str, ...] = ()
        if not created:  # an adopted pool brings its clients: the database learns them from their properties
            imported = tuple(clients_reconcile.reconcile(store, zfs, by="cli").clients.added)
    finally:
        store.close()
    return InitResult(
        data_dir=paths.data_dir,
        pool=pool,
        pool_created=created,
        admin_username=ADMIN_USER,
        admin_password=password,
        cert_fingerprint=fingerprint,
        zfs=how,
        implementation=zfs.caps.implementation,
        imported_clients=imported,
    )


def _write_secret(path: Path) -> None:
    if path.exists():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(secrets.token_hex(32))
    tmp.chmod(0o600)
    tmp.replace(path)


def load_settings(paths: Paths, store: Store) -> ApplianceSettings:
    config = settings.load(store)
    if config is None:
        raise NotInitialized(str(paths.data_dir))
    return config


def bring_pool_online(paths: Paths, zfs: ZfsHost, config: ApplianceSettings) -> pools.Pool:
    """Import the appliance's pool if ZFS does not have it imported (after a reboot, say)."""
    name = config.pool.name
    if pools.exists(zfs, name):
        return pools.get_pool(zfs, name)
    search = [str(paths.pool_dir)] if config.pool.file_backed else []
    log.info("pool %s is not imported; importing it", name)
    return pools.import_pool(zfs, name, search)
