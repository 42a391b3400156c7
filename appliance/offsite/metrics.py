"""Prometheus families of offsite replication: the backlog per client and target, and what is stored offsite."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from appliance.store import Store


def families(store: Store) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "bulwark_offsite_backlog_bytes",
        "Bytes of recovery points not yet replicated to the target (estimate, sampled by bulwarkd every 5 min)",
        labels=["client", "target"],
    )
    stored = GaugeMetricFamily("bulwark_offsite_stored_bytes", "Bytes held on the target (complete streams)",
                               labels=["client", "target"])  # fmt: skip
    last = GaugeMetricFamily("bulwark_offsite_last_stream_timestamp_seconds",
                             "When the newest complete stream was sent", labels=["client", "target"])  # fmt: skip
    verified = GaugeMetricFamily("bulwark_offsite_verified", "1 if the last verification drill passed",
                                 labels=["client", "target"])  # fmt: skip
    rows = store.query(
        "SELECT s.client, s.target, s.pending_bytes FROM offsite_backlog_samples s JOIN (SELECT client, target,"
        " MAX(at) AS at FROM offsite_backlog_samples GROUP BY client, target) m"
        " ON s.client = m.client AND s.target = m.target AND s.at = m.at"
    )
    for r in rows:
        backlog.add_metric([r["client"], r["target"]], r["pending_bytes"])
    for r in store.query(
        "SELECT client, target, SUM(stored_bytes) AS b, MAX(completed_at) AS t FROM offsite_streams"
        " WHERE state = 'complete' GROUP BY client, target"
    ):
        stored.add_metric([r["client"], r["target"]], r["b"])
        last.add_metric([r["client"], r["target"]], r["t"])
    for r in store.query(
        "SELECT v.client, v.target, v.ok FROM offsite_verifications v JOIN (SELECT client, target, MAX(at) AS at"
        " FROM offsite_verifications GROUP BY client, target) m ON v.client = m.client AND v.target = m.target"
        " AND v.at = m.at"
    ):
        verified.add_metric([r["client"], r["target"]], r["ok"])
    yield from (backlog, stored, last, verified)
