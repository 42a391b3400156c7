"""``bulwark run``: the whole appliance in the foreground — bulwarkd in this process, the web UI under
gunicorn (HTTPS) as a supervised child. SIGINT/SIGTERM stop everything cleanly."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from appliance import provision
from appliance.daemon import Daemon
from appliance.samba.supervise import SmbSupervisor
from appliance.store import Store
from appliance.system import settings
from appliance.system.errors import BulwarkError, Busy
from appliance.system.paths import Paths
from appliance.system.runner import LocalRunner, Service
from appliance.tunnel import config as tunnel_config

log = logging.getLogger("bulwark.server")

RESTART_LIMIT = 5
RESTART_WINDOW = 60.0


class WebFailed(BulwarkError):
    """The web server stopped repeatedly ({} times within {} s); giving up."""

    code = "web_failed"
    hint = "Read the gunicorn errors above; a broken TLS certificate or a busy port are the usual causes."


@dataclass(frozen=True)
class WebOptions:
    port: int
    bind: str = "0.0.0.0"  # noqa: S104 - the appliance serves its LAN
    workers: int = 2
    tunnel_port: int | None = None  # loopback listener for the remote-access tunnel (requests there are remote)


def check_port_free(bind: str, port: int) -> None:
    """Fail early, with a clear message, if the port is taken."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise Busy(f"port {port} on {bind} ({exc.strerror}); choose another with --port") from exc
            raise


def gunicorn_argv(paths: Paths, opts: WebOptions) -> list[str]:
    binds = ["--bind", f"[{opts.bind}]:{opts.port}" if ":" in opts.bind else f"{opts.bind}:{opts.port}"]
    if opts.tunnel_port is not None:
        binds += ["--bind", f"127.0.0.1:{opts.tunnel_port}"]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        *binds,
        "--workers",
        str(opts.workers),
        # Threads, so that a long streamed download neither blocks the UI nor hits the worker timeout.
        "--worker-class",
        "gthread",
        "--threads",
        "8",
        "--certfile",
        str(paths.tls_cert),
        "--keyfile",
        str(paths.tls_key),
        "--access-logfile",
        str(paths.log_dir / "access.log"),
        "--error-logfile",
        "-",
        "--log-level",
        "warning",
        "--timeout",
        "60",
        "--graceful-timeout",
        "10",
        "--forwarded-allow-ips",
        "",
        "webui.wsgi:app",
    ]


# A TLS socket read allocates a buffer as large as the read asked for (gunicorn asks for up to 1 MiB of a request
# body) and shrinks it to the record it got (16 KiB at most). Above glibc's default mmap threshold each such buffer
# is a fresh mapping, so every record costs an mmap, page faults and an munmap. A fixed threshold above that size,
# and a trim threshold that keeps freed memory for the next request, take the buffers from the heap instead (over
# a 2 GiB agent backup: a tenth less CPU in the web server).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4194304:glibc.malloc.trim_threshold=67108864"


def _malloc_tunables() -> str:
    inherited = os.environ.get("GLIBC_TUNABLES", "")
    return f"{inherited}:{MALLOC_TUNABLES}" if inherited else MALLOC_TUNABLES


def start_web(runner: LocalRunner, paths: Paths, opts: WebOptions) -> Service:
    env = {"BULWARK_DATA_DIR": str(paths.data_dir), "GLIBC_TUNABLES": _malloc_tunables()}
    if opts.tunnel_port is not None:
        env[tunnel_config.LISTENER_ENV] = str(opts.tunnel_port)
    return runner.spawn(
        gunicorn_argv(paths, opts),
        env=env,
        inherit_env=True,
        stderr=sys.stderr.fileno(),
        cwd=str(Path(__file__).resolve().parent.parent),
    )


def wait_until_listening(port: int, proc: Service, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def _tunnel_listener_changed(store: Store, opts: WebOptions) -> int | None:
    """The remote-access tunnel's listener port if it was set (``bulwark tunnel configure``) since the web server
    started, else None. Only a newly set port counts: its removal never happens while running."""
    config = settings.load(store)
    port = config.tunnel_listen_port if config is not None else None
    return port if port is not None and port != opts.tunnel_port else None


LISTENER_RETRY = 30.0  # after gunicorn failed to start with a new tunnel listener, it is tried again this late


class ListenerFollower:
    """Restarts gunicorn when the tunnel listener port is set or changed while it runs (``bulwark run`` and
    ``bulwark web`` alike), so that remote access works without a manual restart.

    A port that is taken never costs the web UI: gunicorn keeps its LAN listener (and its previous tunnel
    listener), the problem is logged once with what to do, and the port is taken as soon as it is free."""

    def __init__(self, store: Store, runner: LocalRunner, paths: Paths) -> None:
        self.store = store
        self.runner = runner
        self.paths = paths
        self.reported: set[int] = set()  # ports whose problem was logged
        self.retry_at: dict[int, float] = {}  # port -> when to try again after gunicorn failed with it

    def startup(self, opts: WebOptions) -> WebOptions:
        """The options to start with: without the tunnel listener while its port is taken."""
        if opts.tunnel_port is None:
            return opts
        try:
            check_port_free("127.0.0.1", opts.tunnel_port)
        except Busy:
            self._report(opts.tunnel_port, "another program holds it")
            return replace(opts, tunnel_port=None)
        return opts

    def follow(self, web: Service, opts: WebOptions) -> tuple[Service, WebOptions]:
        """Call every loop step: the web server and its options, restarted with a newly set listener."""
        wanted = _tunnel_listener_changed(self.store, opts)
        if wanted is None or time.monotonic() < self.retry_at.get(wanted, 0.0):
            return web, opts
        try:
            check_port_free("127.0.0.1", wanted)
        except Busy:
            self._report(wanted, "another program holds it")
            return web, opts
        log.info("the tunnel listener is now port %s: restarting the web server", wanted)
        web.stop(timeout=15)
        new_opts = replace(opts, tunnel_port=wanted)
        web = start_web(self.runner, self.paths, new_opts)
        if wait_until_listening(new_opts.port, web):
            self.reported.discard(wanted)
            self.retry_at.pop(wanted, None)
            return web, new_opts
        web.stop(timeout=5)
        self.reported.discard(wanted)
        self._report(wanted, "the web server did not start with it")
        self.retry_at[wanted] = time.monotonic() + LISTENER_RETRY
        return start_web(self.runner, self.paths, opts), opts

    def _report(self, port: int, why: str) -> None:
        if port in self.reported:
            return
        self.reported.add(port)
        log.error(
            "the tunnel listener port %s cannot be used (%s): remote access waits for it, the web UI runs on; "
            "free the port or choose another with 'bulwark tunnel configure --listen-port'",
            port,
            why,
        )


def serve(paths: Paths, runner: LocalRunner, opts: WebOptions | None = None, *, announce: bool = True) -> int:
    """Run until SIGINT/SIGTERM. Returns the exit status."""
    paths.require_initialized()
    store = Store.open(paths.db)
    config = provision.load_settings(paths, store)
    web_opts = opts or WebOptions(port=config.web_port)
    check_port_free(web_opts.bind, web_opts.port)
    listener = ListenerFollower(store, runner, paths)
    web_opts = listener.startup(web_opts)
    zfs, how = provision.connect_zfs(paths, runner)
    pool = provision.bring_pool_online(paths, zfs, config)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    daemon = Daemon(store=store, zfs=zfs, pool_name=config.pool.name, runner=runner)
    web: Service | None = None
    smb = SmbSupervisor(store, zfs, runner, paths.log_dir / "smbd.log")
    try:
        daemon.start()
        smb.start()  # a failure is an alert; the rest of the appliance runs on
        web = start_web(runner, paths, web_opts)
        if not wait_until_listening(web_opts.port, web):
            raise WebFailed(1, 30)
        (paths.run_dir / "bulwark.pid").write_text(str(os.getpid()))
        if announce:
            print(
                f"Bulwark is running: https://{config.hostname}:{web_opts.port}/ "
                f"(also https://127.0.0.1:{web_opts.port}/)",
                flush=True,
            )
            print(
                f"Pool {pool.name}: {pool.health} on {zfs.caps.implementation} ({how}). Press Ctrl-C to stop.",
                flush=True,
            )
        restarts: list[float] = []
        while not stop.wait(0.5):
            smb.check()
            web, web_opts = listener.follow(web, web_opts)
            if web.poll() is not None:
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
                if len(restarts) > RESTART_LIMIT:
                    raise WebFailed(len(restarts), int(RESTART_WINDOW))
                log.error("web server exited with status %s; restarting it", web.proc.returncode)
                web = start_web(runner, paths, web_opts)
        return 0
    finally:
        if web is not None:
            web.stop(timeout=15)
        smb.stop()
        daemon.stop()
        store.close()
        with contextlib.suppress(FileNotFoundError):
            (paths.run_dir / "bulwark.pid").unlink()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if announce:
            print("Bulwark stopped.", flush=True)


def serve_web_only(paths: Paths, runner: LocalRunner, opts: WebOptions) -> int:
    """The web UI alone (systemd's bulwark-web.service; bulwarkd runs in its own unit). Like ``serve``, it
    restarts gunicorn when the tunnel listener port is set; an exit of gunicorn ends it (systemd restarts it)."""
    paths.require_initialized()
    check_port_free(opts.bind, opts.port)
    store = Store.open(paths.db)
    listener = ListenerFollower(store, runner, paths)
    opts = listener.startup(opts)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    web = start_web(runner, paths, opts)
    try:
        while not stop.wait(0.5):
            if web.poll() is not None:
                return web.proc.returncode or 1
            web, opts = listener.follow(web, opts)
        return 0
    finally:
        web.stop(timeout=15)
        store.close()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
