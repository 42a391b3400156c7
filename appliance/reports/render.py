"""Reports as HTML (one fragment for the web page, the same fragment in a standalone printable document for
files and e-mail) and as plain text for the e-mail's text part. Templates are logic-free; the numbers are made
in :mod:`appliance.reports.sla`."""

from __future__ import annotations

from collections.abc import Callable

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

import appliance
from appliance.reports.sla import ClientReport, Summary
from appliance.system.durations import describe_age, format_duration
from appliance.zfs import units

_env = Environment(
    loader=PackageLoader("appliance.reports", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def _size(value: int | None) -> str:
    return "—" if value is None else units.format_size(value)


def _change(value: int | None) -> str:
    if value is None:
        return ""
    return ("+" if value >= 0 else "−") + units.format_size(abs(value))


def client_body(report: ClientReport) -> Markup:
    """The report as an HTML fragment (classes only: the page's stylesheet or the document's styles it)."""
    return Markup(  # noqa: S704  (rendered by an autoescaping template)
        _env.get_template("_client_body.html").render(
            r=report,
            rpo_target=format_duration(report.rpo_target),
            used=_size(report.used_bytes),
            change=_change(report.used_change_bytes),
            longest_gap=describe_age(report.longest_gap_seconds),
            chart=Markup(report.chart_svg()),  # noqa: S704  (built from numbers, text escaped)
        )
    )


def summary_body(summary: Summary, link: Callable[[str], str] | None = None) -> Markup:
    pool = summary.pool
    pool_used = "—" if not pool else f"{100 * pool['alloc_bytes'] / max(1, pool['size_bytes']):.0f} %"
    return Markup(  # noqa: S704
        _env.get_template("_summary_body.html").render(s=summary, pool_used=pool_used, size=_size, link=link)
    )


def document(title: str, body: Markup, hostname: str) -> str:
    """A standalone HTML document with its styles inline and a print stylesheet."""
    return _env.get_template("document.html").render(
        title=title, body=body, hostname=hostname, version=appliance.__version__
    )


def client_document(report: ClientReport) -> str:
    return document(f"Backup report: {report.client}", client_body(report), report.hostname)


def summary_document(summary: Summary) -> str:
    return document(f"Appliance summary: {summary.hostname}", summary_body(summary), summary.hostname)


def client_text(report: ClientReport) -> str:
    met = "—" if report.rpo_met_percent is None else f"{report.rpo_met_percent:.2f} %"
    lines = [
        f"Backup report: {report.client} (appliance {report.hostname})",
        f"{report.when(report.start, '%Y-%m-%d')} to {report.when(report.end, '%Y-%m-%d')} ({report.days} days)",
        "",
        f"Within RPO target ({format_duration(report.rpo_target)}): {met}",
        f"Status now: {report.rpo_state}; last good point {report.when(report.last_good_at)}",
        f"Recovery points made: {report.points_made}",
        "Verification: {verified} verified, {unverified} not verified, {failed} failed".format(**report.verification),
        f"Storage used: {_size(report.used_bytes)} {_change(report.used_change_bytes)}".rstrip(),
        f"Open alerts: {len(report.open_alerts)}",
    ]
    lines += [f"  - [{a['level']}] {a['message']}" for a in report.open_alerts]
    return "\n".join(lines) + "\n"


def summary_text(summary: Summary) -> str:
    lines = [f"Appliance summary: {summary.hostname}, last {summary.days} days", ""]
    for c in summary.clients:
        met = "—" if c.rpo_met_percent is None else f"{c.rpo_met_percent:.1f} %"
        lines.append(f"{c.client:24} {c.rpo_state:9} within target {met:>8}  points {c.points_made:>5}")
    lines += ["", f"Open alerts: {summary.alert_counts['open']} ({summary.alert_counts['active']} need attention)"]
    return "\n".join(lines) + "\n"
