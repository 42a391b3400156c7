"""The tunnel as everyone outside ``bulwarkd`` sees it: ``bulwark tunnel status --json``, the Remote access page,
``GET /api/v1/tunnel`` and ``/metrics`` all read this one report."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from appliance.daemon import daemon_state
from appliance.store import Store
from appliance.system.paths import Paths
from appliance.tunnel import config as tunnel_config
from appliance.tunnel import keys
from appliance.tunnel.state import load_state

STALE = 30.0  # a state older than this, with bulwarkd gone, is not believed


LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def listening(port: int | None, table: str = "/proc/net/tcp") -> bool:
    """Whether something listens on 127.0.0.1:``port`` (or on every address) — the web UI's tunnel listener,
    without which forwarded requests find nothing. Read from the kernel's table: no connection is made."""
    if port is None:
        return False
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with contextlib.suppress(OSError):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN and fields[1] in wanted:
                return True
    return False


def report(store: Store, paths: Paths, *, now: float | None = None, probe: bool = True) -> dict[str, Any]:
    """``{"state": "connected"|"connecting"|"down"|"disabled", …}`` with the configuration, the key, the last
    error and what to do about it, counters, and the on-site switch."""
    at = time.time() if now is None else now
    cfg = tunnel_config.load(store)
    st = load_state(store)
    daemon = daemon_state(store)
    local_port = tunnel_config.local_port(store)
    state = st.state
    last_error, hint = st.last_error, st.last_error_hint
    if cfg is None or not cfg.enabled:
        state = "disabled"
    elif not daemon["running"]:
        state = "down"
        last_error = "bulwarkd is not running, so nothing keeps the tunnel up"
        hint = "Start the appliance ('bulwark run' or the bulwarkd service)."
    elif state == "disabled" or at - st.updated_at > STALE:
        state = "connecting"  # enabled a moment ago: bulwarkd has not picked it up yet
    if state == "connected":  # the last error belongs to the time before: the events keep it
        last_error = hint = None
    has_key = keys.has_key_pair(paths)
    pubkey = keys.public_key(paths) if has_key else None
    switch = tunnel_config.remote_switch(store)
    out: dict[str, Any] = {
        "state": state,
        "configured": cfg is not None,
        "enabled": bool(cfg and cfg.enabled),
        "since": st.since or None,
        "connected_since": st.connected_since if state == "connected" else None,
        "down_since": st.down_since if state in ("down", "connecting") else None,
        "last_error": last_error,
        "last_error_hint": hint,
        "last_error_at": st.last_error_at if last_error else None,
        "blocked": st.blocked if state == "down" else None,
        "reconnects": st.reconnects,
        "failures_in_a_row": st.attempts,
        "next_attempt_at": st.next_attempt_at if state == "down" else None,
        "bytes_sent": st.bytes_sent,
        "bytes_received": st.bytes_received,
        "pid": st.pid if state in ("connected", "connecting") else None,
        "presented_host_key": st.presented_host_key,
        "jump_host": None,
        "local_port": local_port,
        "local_listener": listening(local_port) if probe else None,
        "public_key": pubkey.line() if pubkey else None,
        "public_key_fingerprint": pubkey.fingerprint if pubkey else None,
        "authorized_keys_line": keys.authorized_keys_line(pubkey, cfg.remote_port) if pubkey and cfg else None,
        "remote_sessions": switch.to_dict(),
        "events": list(reversed(st.events)),
    }
    if cfg is not None:
        pinned = keys.parse_public_key(cfg.host_key) if cfg.host_key else None
        pending = keys.parse_public_key(cfg.pending_host_key) if cfg.pending_host_key else None
        out["jump_host"] = {
            "host": cfg.host,
            "port": cfg.port,
            "user": cfg.user,
            "remote_port": cfg.remote_port,
            "alert_after": cfg.alert_after,
            "host_key": pinned.bare() if pinned else None,
            "host_key_fingerprint": pinned.fingerprint if pinned else None,
            "pending_host_key": pending.bare() if pending else None,
            "pending_host_key_fingerprint": pending.fingerprint if pending else None,
        }
    return out
