"""The tunnel's supervisor: a thread of ``bulwarkd`` that keeps one ``ssh -N -R`` running to the jump host.

It reads the configuration every step (a change restarts ``ssh`` at once), follows what ``ssh`` says on stderr
(:func:`appliance.tunnel.ssh.classify`), restarts it after an exit with exponential backoff and jitter, and
records the state for everyone else (:mod:`.state`). A changed jump host key is never retried: the tunnel stays
down and a critical alert is raised until a person pins a key again. An alert is also raised when the tunnel has
been down longer than the configured delay, and cleared when it is back."""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from appliance import alerts
from appliance.store import Store
from appliance.system.durations import format_duration
from appliance.system.errors import BulwarkError
from appliance.system.paths import Paths
from appliance.system.runner import PIPE, LocalRunner, Service
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import keys, ssh
from appliance.tunnel.state import RECONNECT_KEY, TunnelState, save_state

log = logging.getLogger("bulwark.tunnel")

CATEGORY = "tunnel"
DOWN_KEY = "tunnel:down"
HOST_KEY_KEY = "tunnel:host_key"
DOWN_REFRESH = 60.0  # a standing down alert is refreshed (its message: how long) this often

TUNNEL_DOWN = alerts.declare(
    "tunnel.down",
    level="warning",
    category=CATEGORY,
    title="Remote access down",
    template="the remote-access tunnel to {destination} has been down for {duration}: {error}",
)
HOST_KEY_CHANGED = alerts.declare(
    "tunnel.host_key_changed",
    level="critical",
    category=CATEGORY,
    title="Jump host key changed",
    template=(
        "the jump host {destination} presented the key {presented} instead of the pinned {pinned}; "
        "the tunnel is stopped until the key is confirmed and pinned again"
    ),
)


@dataclass(frozen=True)
class Backoff:
    """``base × 2^(failures-1)``, capped, then a random share of it in [½, 1] (equal jitter: never a storm of
    appliances retrying in step, never much sooner than planned)."""

    base: float = 1.0
    cap: float = 300.0
    stable_after: float = 30.0  # a connection that lasted this long resets the failure count

    def delay(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        step = min(self.cap, self.base * 2.0 ** max(0, failures - 1))
        return step / 2 + rng() * step / 2


class _Lines(threading.Thread):
    """Reads ``ssh``'s stderr line by line into a queue (the supervisor never blocks on it)."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True, name="tunnel-ssh-stderr")
        self.pipe = pipe
        self.lines: queue.Queue[str] = queue.Queue()

    def run(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            for raw in iter(self.pipe.readline, b""):
                self.lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))


class Supervisor(threading.Thread):
    """Run as a thread of ``bulwarkd``; stops (and stops ``ssh``) when ``stop_event`` is set."""

    def __init__(
        self,
        store: Store,
        runner: LocalRunner,
        paths: Paths,
        stop_event: threading.Event,
        *,
        backoff: Backoff | None = None,
        poll: float = 0.2,
        sample_every: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(daemon=True, name="tunnel")
        self.store = store
        self.runner = runner
        self.paths = paths
        self.stop_event = stop_event
        self.backoff = backoff or Backoff()
        self.poll = poll
        self.sample_every = sample_every
        self.rng = rng
        self.st = TunnelState()
        self.proc: Service | None = None
        self.reader: _Lines | None = None
        self.running_identity: tuple[object, ...] | None = None
        self.running_port: int | None = None
        self.started_at = 0.0
        self.problem: ssh.Event | None = None
        self.session_bytes = (0, 0)
        self.last_sample = 0.0
        self.last_save = 0.0
        self.reconnect_seen: float | None = None
        self.tail: deque[str] = deque(maxlen=40)
        self.down_alerted_at = 0.0

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.reconnect_seen = self.store.get_setting(RECONNECT_KEY)
        try:
            while not self.stop_event.is_set():
                try:
                    self.step(time.time())
                except BulwarkError as exc:
                    log.warning("tunnel supervision: %s", exc)
                except Exception:
                    log.exception("tunnel supervision crashed; trying again")
                self.stop_event.wait(self.poll)
        finally:
            try:
                if self.proc is not None:
                    self._stop_ssh(time.time(), "bulwarkd stopped")
                    self._set(time.time(), "down", "bulwarkd stopped")
                    self._save(time.time())
            finally:
                self.store.close_thread()

    def step(self, now: float) -> None:
        cfg = tunnel_config.load(self.store)
        if cfg is None or not cfg.enabled:
            if self.proc is not None:
                self._stop_ssh(now, "remote access switched off")
            if self.st.state != "disabled":
                self.st = TunnelState(reconnects=self.st.reconnects, events=self.st.events)
                self._set(now, "disabled", "remote access switched off" if cfg else "not configured")
                alerts.clear(self.store, DOWN_KEY)
            self._save(now, every=30.0)
            return
        moved = tunnel_config.local_port(self.store) != self.running_port  # the web UI's listener it leads to
        if self.proc is not None and (cfg.identity() != self.running_identity or moved):
            self._stop_ssh(now, "configuration changed")
            self.st.attempts = 0
            self.st.next_attempt_at = None
        self._reconnect_request(now)
        if self.st.blocked == "host_key_changed":
            if cfg.host_key and self.running_identity == cfg.identity():
                self._check_down(now, cfg)
                self._save(now, every=5.0)
                return
            self.st.blocked = None  # a person pinned a key again
            self.st.presented_host_key = None
            alerts.clear(self.store, HOST_KEY_KEY)
        if self.st.state == "disabled":
            self._set(now, "down", None)
            self.st.down_since = now
        if not cfg.host_key:
            self._fail(
                now,
                "no jump host key is pinned yet",
                "Confirm the jump host's key on the Remote access page or with 'bulwark tunnel trust'.",
                retry=False,
            )
            self._check_down(now, cfg)
            self._save(now, every=5.0)
            return
        if self.proc is None:
            if self.st.next_attempt_at is None or now >= self.st.next_attempt_at:
                self._start(now, cfg)
        else:
            self._drain(now)
            code = self.proc.poll()
            if code is not None:
                self._exited(now, cfg, code)
            elif self.st.state == "connected" and now - self.last_sample >= self.sample_every:
                self._sample(now)
        self._check_down(now, cfg)
        self._save(now, every=5.0)

    # -- ssh ------------------------------------------------------------------------------------------------------

    def _start(self, now: float, cfg: tunnel_config.TunnelConfig) -> None:
        port = tunnel_config.local_port(self.store)
        if port is None:
            self._fail(now, "the web UI has no tunnel listener", "Configure remote access again; it sets one.")
            return
        if not keys.has_key_pair(self.paths):
            self._fail(now, "the appliance has no tunnel key", "Run 'bulwark tunnel configure' to make one.")
            return
        known = keys.write_known_hosts(self.paths, cfg.host_key)
        argv = ssh.ssh_argv(cfg, key=keys.private_key_path(self.paths), known_hosts=known, local_port=port)
        if self.started_at:
            self.st.reconnects += 1
        self.problem = None
        self.session_bytes = (0, 0)
        self.proc = self.runner.spawn(argv, stderr=PIPE)
        assert self.proc.proc.stderr is not None
        self.reader = _Lines(self.proc.proc.stderr)
        self.reader.start()
        self.running_identity = cfg.identity()
        self.running_port = port
        self.started_at = now
        self.st.pid = self.proc.pid
        self.st.next_attempt_at = None
        if self.st.down_since is None:
            self.st.down_since = now
        self._set(now, "connecting", None, detail=cfg.destination())
        log.info("tunnel: connecting to %s (pid %d)", cfg.destination(), self.proc.pid)

    def _drain(self, now: float) -> None:
        if self.reader is None:
            return
        while True:
            try:
                line = self.reader.lines.get_nowait()
            except queue.Empty:
                return
            self.tail.append(line)
            if not line.startswith("debug"):
                log.info("ssh: %s", line)
            event = ssh.classify(line)
            if event is None:
                continue
            if event.kind == "forwarding":
                self.st.connected_since = now
                self.st.down_since = None
                self._set(now, "connected", None)
                self.last_sample = 0.0
                alerts.clear(self.store, DOWN_KEY)
                alerts.clear(self.store, HOST_KEY_KEY)
                log.info("tunnel: connected")
            elif event.kind == "host_key":
                self.st.presented_host_key = event.detail
            elif event.kind == "transferred":
                self.session_bytes = (event.sent, event.received)
            elif event.kind in ssh.PROBLEMS and (self.problem is None or self.problem.kind == "closed"):
                self.problem = event

    def _sample(self, now: float) -> None:
        self.last_sample = now
        if self.proc is None:
            return
        try:
            result = self.runner.run(["ss", "-H", "-t", "-i", "-n", "-p", "state", "established"], timeout=10)
            figures = ssh.parse_ss(result.out, self.proc.pid)
        except BulwarkError as exc:
            log.debug("tunnel traffic not sampled: %s", exc)
            return
        if figures is not None:
            self.session_bytes = figures

    def _stop_ssh(self, now: float, why: str) -> None:
        if self.proc is None:
            return
        if self.st.state == "connected":
            self._sample(now)
        self.proc.stop(timeout=5)
        if self.reader is not None:
            self.reader.join(timeout=2)
        self._drain(now)
        self._count_session()
        log.info("tunnel: ssh stopped (%s)", why)
        self.proc = None
        self.reader = None
        self.st.pid = None
        self.st.connected_since = None

    def _count_session(self) -> None:
        self.st.bytes_sent += self.session_bytes[0]
        self.st.bytes_received += self.session_bytes[1]
        self.session_bytes = (0, 0)

    def _exited(self, now: float, cfg: tunnel_config.TunnelConfig, code: int) -> None:
        if self.reader is not None:
            self.reader.join(timeout=2)
        self._drain(now)
        was_up = self.st.connected_since
        self._count_session()
        self.proc = None
        self.reader = None
        self.st.pid = None
        self.st.connected_since = None
        problem = self.problem
        kind = problem.kind if problem else None
        if kind == "host_key_changed":
            pinned = keys.parse_public_key(cfg.host_key or "").fingerprint if cfg.host_key else "?"
            presented = self.st.presented_host_key or "an unknown key"
            self.st.blocked = "host_key_changed"
            message, hint = ssh.PROBLEMS["host_key_changed"]
            self._fail(now, message, hint, retry=False)
            alerts.fire(
                self.store,
                HOST_KEY_CHANGED,
                HOST_KEY_KEY,
                subject="tunnel",
                destination=cfg.destination(),
                presented=presented,
                pinned=pinned,
            )
            log.error("tunnel: the jump host's key changed (%s, pinned %s); not reconnecting", presented, pinned)
            return
        if kind is not None:
            message, hint = ssh.PROBLEMS[kind]
        else:
            chatter = ("debug", "Transferred:", "Bytes per second:")
            last = next((line for line in reversed(self.tail) if not line.startswith(chatter)), "")
            message = f"ssh ended with status {code}" + (f": {last}" if last else "")
            hint = "The tunnel retries by itself; the appliance log has ssh's messages."
        if was_up is not None and now - was_up >= self.backoff.stable_after:
            self.st.attempts = 0
        self._fail(now, message, hint)
        log.warning("tunnel: %s; next attempt in %.1f s", message, (self.st.next_attempt_at or now) - now)

    # -- state --------------------------------------------------------------------------------------------------

    def _fail(self, now: float, message: str, hint: str, *, retry: bool = True) -> None:
        if self.st.last_error != message or self.st.state != "down" or retry:
            self.st.event(now, "error", message)
            self.last_save = 0.0  # save at once
        self.st.last_error = message
        self.st.last_error_hint = hint
        self.st.last_error_at = now
        if self.st.down_since is None:
            self.st.down_since = now
        if retry:
            self.st.attempts += 1
            self.st.next_attempt_at = now + self.backoff.delay(self.st.attempts, self.rng)
        else:
            self.st.next_attempt_at = None
        self._set(now, "down", None)

    def _set(self, now: float, state: str, why: str | None, detail: str = "") -> None:
        if self.st.state != state:
            self.st.state = state
            self.st.since = now
            self.st.event(now, state, why or detail)
            self.last_save = 0.0  # save at once

    def _reconnect_request(self, now: float) -> None:
        asked = self.store.get_setting(RECONNECT_KEY)
        if asked is None or asked == self.reconnect_seen:
            return
        self.reconnect_seen = asked
        self.st.blocked = None  # a person asked: try once more (a changed key still refuses, and alerts again)
        self.st.attempts = 0
        self.st.next_attempt_at = None
        if self.proc is not None and self.st.state != "connected":
            self._stop_ssh(now, "reconnect asked")
        self.st.event(now, "reconnect", "asked by a person")

    def _check_down(self, now: float, cfg: tunnel_config.TunnelConfig) -> None:
        if self.st.state == "connected" or self.st.down_since is None:
            self.down_alerted_at = 0.0
            return
        down_for = now - self.st.down_since
        if down_for < cfg.alert_after or now - self.down_alerted_at < DOWN_REFRESH:
            return
        self.down_alerted_at = now
        alerts.fire(
            self.store,
            TUNNEL_DOWN,
            DOWN_KEY,
            subject="tunnel",
            destination=cfg.destination(),
            duration=format_duration(down_for),
            error=self.st.last_error or "not connected yet",
        )

    def _save(self, now: float, every: float = 5.0) -> None:
        if self.last_save and now - self.last_save < every:
            return
        self.last_save = now
        self.st.updated_at = now
        snapshot = TunnelState.from_json(self.st.to_json())
        snapshot.bytes_sent += self.session_bytes[0]
        snapshot.bytes_received += self.session_bytes[1]
        save_state(self.store, snapshot)
