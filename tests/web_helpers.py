"""Helpers for tests of the web pages and API routes of clients, recovery points and restores: a data
directory whose settings point at a real pool, a browser on the Flask test client (cookies, the CSRF token read
from the page as htmx does, signing in per role), and what the permission walk (tests/unit/test_permissions.py)
needs to fill ``<name>``, ``<point>`` and ``<sid>`` with throwaway objects on its pool."""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from appliance import provision, users
from appliance.clients import browse, points, service
from appliance.clients.model import ClientSettings
from appliance.store import Store
from appliance.system import settings, tls
from appliance.system.paths import Paths
from appliance.system.runner import local_runner
from appliance.system.settings import ApplianceSettings, PoolConfig
from appliance.zfs import datasets
from appliance.zfs.errors import DatasetBusy
from appliance.zfs.host import ZfsHost
from webui.identity import SETUP_DONE_KEY
from webui.permissions import allowed, permission_of

ROLE_USERS = {"admin": "admin", "operator": "olivia", "viewer": "victor"}
PASSWORDS = {"admin": "admin-password-1", "olivia": "operator-password-1", "victor": "viewer-password-1"}
TIMEZONE = "Europe/Berlin"
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def make_data_dir(data_dir: Path, pool: str, mountpoint: Path) -> Paths:
    """An initialized data directory (as ``bulwark init`` leaves it, first run done) on an existing pool, with
    an admin, an operator and a viewer (``ROLE_USERS``, ``PASSWORDS``). Needs ``BULWARK_TESTONLY_WEAK_KDF``."""
    paths = Paths(data_dir)
    paths.make_dirs()
    tls.create_self_signed(paths.tls_cert, paths.tls_key, "bulwark-test")
    provision._write_secret(paths.secret_key)
    db = Store.open(paths.db)
    try:
        for role, username in ROLE_USERS.items():
            users.create_user(db, username, PASSWORDS[username], role)
        settings.save(
            db,
            ApplianceSettings(
                pool=PoolConfig(name=pool, layout="file", mountpoint=str(mountpoint)),
                hostname="bulwark-test",
                timezone=TIMEZONE,
                initialized_at=time.time(),
            ),
        )
        db.set_setting(SETUP_DONE_KEY, True)
    finally:
        db.close()
    return paths


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


class Browser:
    """One browser on the test client: its own cookies; forms carry the page's CSRF token, API calls with the
    session cookie carry it as the ``X-CSRF-Token`` header (as htmx and app.js do)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self._csrf: str | None = None
        self.role: str | None = None

    def open(self, path: str, method: str = "GET", **kwargs: Any) -> TestResponse:
        kwargs.setdefault("base_url", "https://localhost")
        return self.client.open(path, method=method, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.open(path, "GET", **kwargs)

    def csrf(self) -> str:
        if self._csrf is None:
            match = _META_CSRF.search(text(self.get("/login")))
            assert match, "no CSRF token on the login page"
            self._csrf = match.group(1)
        return self._csrf

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> TestResponse:
        form = {"csrf_token": self.csrf(), **(data or {})}
        return self.open(path, "POST", data=form, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> TestResponse:
        headers = {"X-CSRF-Token": self.csrf(), **kwargs.pop("headers", {})}
        return self.open(path, method, headers=headers, **kwargs)

    def sign_in(self, role: str) -> Browser:
        username = ROLE_USERS[role]
        response = self.post("/login", {"username": username, "password": PASSWORDS[username]})
        assert response.status_code == 302 and response.headers["Location"] == "/", (role, response.status_code)
        self._csrf = None  # a new session has a new token
        self.role = role
        return self


# -- the permission walk ---------------------------------------------------------------------------------------

CLIENT_ARGUMENTS = frozenset({"name", "point", "sid"})
WALK_FILE = "walk.txt"


def client_endpoints(app: Flask) -> set[str]:
    """Endpoints whose answer needs a client on a real pool (those with a client, point or session argument)."""
    return {rule.endpoint for rule in app.url_map.iter_rules() if set(rule.arguments) & CLIENT_ARGUMENTS}


def fill_client_arguments(
    app: Flask, rule: Rule, role: str | None, username: str | None, *, real_pool: bool
) -> tuple[dict[str, str], str]:
    """Values for the client arguments of ``rule`` — a fresh SMB client holding one file, a recovery point of it,
    a browse session of that point opened by ``username`` (a session belongs to whoever opened it) — and the
    query string the route needs (``?path=walk.txt`` for a file download). Where the request will be refused
    before the view runs (no sign-in, or a role the route does not allow), or without a real pool, the values
    name nothing that exists and nothing is made. :func:`remove_clients` takes it all away again."""
    wanted = set(rule.arguments) & CLIENT_ARGUMENTS
    query = f"?path={WALK_FILE}" if rule.rule.endswith("/file") else ""
    permission = permission_of(app.view_functions[rule.endpoint])
    if not real_pool or role is None or permission is None or not allowed(role, permission):
        return {"name": "walk-missing", "point": "share@none", "sid": "0" * 16}, query
    db: Store = app.extensions["bulwark.store"]
    read_only = (rule.methods or set()) <= {"GET", "HEAD", "OPTIONS"}
    cache: dict[tuple[str | None, frozenset[str]], dict[str, str]] = app.extensions.setdefault("walk.clients", {})
    if read_only and (username, frozenset(wanted)) in cache:  # pages that change nothing may share one
        return cache[(username, frozenset(wanted))], query
    zfs = ZfsHost.detect(local_runner())
    name = f"walk-{secrets.token_hex(4)}"
    client = service.create_client(db, zfs, name, ClientSettings.build(kind="smb", schedule="off"), by="test")
    values = {"name": name}
    if wanted & {"point", "sid"}:
        share = datasets.get_dataset(zfs, client.area_dataset("share")).mountpoint
        assert share is not None
        (Path(share) / WALK_FILE).write_text("walked\n")
        snapname = points.snapname_for(time.time(), "manual")
        point = points.take_point(zfs, client, "share", snapname, source="manual", created_by="test")
        values["point"] = point.id
        if "sid" in wanted:
            values["sid"] = browse.open_session(db, zfs, name, point.id, by=f"user:{username}").id
    if read_only:
        cache[(username, frozenset(wanted))] = values
    return values, query


def remove_clients(db: Store) -> None:
    """Destroy every client and browse clone on the pool of ``db``'s settings (holds released first), so that a
    pool shared by a test module has no new mounts when a test ends."""
    zfs = ZfsHost.detect(local_runner())
    for session in browse.list_sessions(db):
        browse.close_session(db, zfs, session.id)
    browse_root = browse.browse_root(db)
    if datasets.exists(zfs, browse_root):
        datasets.destroy(zfs, browse_root, recursive=True)
    root = service.clients_root(db)
    if not datasets.exists(zfs, root):
        return
    for client in service.read_clients_from_zfs(db, zfs)[0]:
        for point in points.scan(zfs, client).points:
            if point.holds:
                points.enforce_holds(zfs, dataclasses.replace(point, pinned=False, locked_until=None))
    # zfs-fuse finds many mounted children "busy" when destroying them recursively: unmount them first.
    for attempt in range(1, 61):
        try:
            if datasets.get_dataset(zfs, root).mounted:
                datasets.unmount(zfs, root)
            datasets.destroy(zfs, root, recursive=True)
            return
        except DatasetBusy:
            if attempt == 60:
                raise
            time.sleep(0.02 * attempt)


# -- a whole web app on a real pool ----------------------------------------------------------------------------


class Site:
    """The web app on an initialized data directory whose pool is a real zfs-fuse pool, and what bulwarkd would
    do for it (run the queued jobs, in this thread)."""

    def __init__(self, app: Flask, pool_name: str, pool_mountpoint: Path) -> None:
        self.app = app
        self.db: Store = app.extensions["bulwark.store"]
        self.zfs = ZfsHost.detect(local_runner())
        self.pool = pool_name
        self.mountpoint = pool_mountpoint

    def browser(self, role: str | None = None) -> Browser:
        web = Browser(self.app)
        return web.sign_in(role) if role is not None else web

    def add(self, name: str, kind: str = "smb", **raw: Any) -> Any:
        raw.setdefault("schedule", "off")
        return service.create_client(self.db, self.zfs, name, ClientSettings.build(kind=kind, **raw), by="test")

    def live(self, client: str, area: str = "share") -> Path:
        return self.mountpoint / "clients" / client / area

    def run_jobs(self) -> list[Any]:
        """Run every queued job to its end, as a worker of the daemon does; returns their final records."""
        import threading

        import appliance.clients.jobs  # noqa: F401  (registers the job kinds)
        from appliance.jobs import base, queue
        from appliance.jobs.worker import Worker

        worker = Worker(0, self.db, self.zfs, threading.Event(), threading.Event())
        done = []
        while (job := queue.claim(self.db, base.REGISTRY.keys())) is not None:
            worker.execute(job)
            done.append(queue.get(self.db, job.id))
        return done

    def clones(self) -> list[str]:
        root = f"{self.pool}/browse"
        if not datasets.exists(self.zfs, root):
            return []
        return [n for n in datasets.list_names(self.zfs, root) if n != root]


def open_site(tmp_path: Path, pool_name: str, pool_mountpoint: Path) -> Site:
    from webui import create_app

    paths = make_data_dir(tmp_path / "data", pool_name, pool_mountpoint)
    return Site(create_app({"DATA_DIR": str(paths.data_dir), "TESTING": True}), pool_name, pool_mountpoint)


def close_site(site: Site) -> None:
    """Close what the test left open (browse clones are destroyed) and the app's database."""
    for session in browse.list_sessions(site.db):
        browse.close_session(site.db, site.zfs, session.id)
    site.db.close()
