"""The tunnel's families for ``/metrics`` (docs/metrics.md): its state, since when, reconnects, traffic."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance.store import Store
from appliance.system.paths import Paths
from appliance.tunnel import status
from appliance.tunnel.state import STATES


def families(store: Store, now: float) -> Iterator[Metric]:
    report = status.report(store, Paths(store.path.parent), now=now, probe=False)
    state = GaugeMetricFamily("bulwark_tunnel_state", "1 for the tunnel's current state", labels=["state"])
    for name in STATES:
        state.add_metric([name], 1 if report["state"] == name else 0)
    yield state
    yield GaugeMetricFamily(
        "bulwark_tunnel_connected_since_seconds",
        "When the tunnel came up (Unix time; 0 while it is not connected)",
        value=report["connected_since"] or 0,
    )
    yield GaugeMetricFamily(
        "bulwark_tunnel_down_seconds",
        "How long the tunnel has been down (0 while connected or switched off)",
        value=max(0.0, now - report["down_since"]) if report["down_since"] else 0,
    )
    yield GaugeMetricFamily(
        "bulwark_tunnel_host_key_changed",
        "1 while the tunnel is stopped because the jump host's key changed",
        value=1 if report["blocked"] == "host_key_changed" else 0,
    )
    yield GaugeMetricFamily(
        "bulwark_tunnel_remote_sessions_allowed",
        "0 while the on-site switch blocks remote sessions",
        value=1 if report["remote_sessions"]["allowed"] else 0,
    )
    yield CounterMetricFamily(
        "bulwark_tunnel_reconnects", "Times ssh was started again since bulwarkd started", value=report["reconnects"]
    )
    traffic = CounterMetricFamily(
        "bulwark_tunnel_bytes", "Bytes through the tunnel's connection since bulwarkd started", labels=["direction"]
    )
    traffic.add_metric(["sent"], report["bytes_sent"])
    traffic.add_metric(["received"], report["bytes_received"])
    yield traffic
