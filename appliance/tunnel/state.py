"""The tunnel's state as ``bulwarkd`` records it for the CLI, the web UI, the API and ``/metrics``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from appliance.store import Store

STATE_KEY = "tunnel.state"
RECONNECT_KEY = "tunnel.reconnect_requested"
STATES = ("connected", "connecting", "down", "disabled")
EVENTS_KEPT = 30


@dataclass
class TunnelState:
    """``state`` is one of :data:`STATES`. ``down_since`` is when the tunnel was last seen working (or first
    tried); ``attempts`` counts failures in a row (the backoff grows with it); ``reconnects`` counts restarts
    of ``ssh`` since ``bulwarkd`` started. ``blocked`` names a condition that stops retrying
    (``host_key_changed``) until a person acts."""

    state: str = "disabled"
    since: float = 0.0
    connected_since: float | None = None
    down_since: float | None = None
    last_error: str | None = None
    last_error_hint: str | None = None
    last_error_at: float | None = None
    reconnects: int = 0
    attempts: int = 0
    next_attempt_at: float | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    pid: int | None = None
    blocked: str | None = None
    presented_host_key: str | None = None
    updated_at: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TunnelState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def event(self, at: float, kind: str, detail: str = "") -> None:
        self.events.append({"at": at, "event": kind, "detail": detail})
        del self.events[:-EVENTS_KEPT]


def load_state(store: Store) -> TunnelState:
    data = store.get_setting(STATE_KEY)
    return TunnelState() if not data else TunnelState.from_json(data)


def save_state(store: Store, state: TunnelState) -> None:
    store.set_setting(STATE_KEY, state.to_json())


def request_reconnect(store: Store, at: float) -> None:
    """Ask ``bulwarkd`` to try now rather than at the end of the backoff (e.g. once the MSP added the key)."""
    store.set_setting(RECONNECT_KEY, at)
