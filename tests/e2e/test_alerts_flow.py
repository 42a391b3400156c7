"""Alerts, channels and reports in Chromium against a real running appliance (`bulwark init` and `bulwark run` on
a zfs-fuse file pool, HTTPS, bulwarkd delivering), with a real SMTP server (aiosmtpd, STARTTLS + AUTH) started
here on loopback.

One story: channels added through the UI (mail, and a webhook to a closed port), test sends followed live on
the page (delivered / refused), real conditions (a failed snapshot job, the broken channel) raised as alerts and
mailed by bulwarkd, acknowledged and snoozed through the UI, then a client's SLA report and the appliance
summary, on screen and as printed. Screenshots: artifacts/screenshots/alerts-*.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.system.runner import local_runner
from tests.alert_servers import SMTP_PASSWORD, SMTP_USER, MailServer, closed_port, smtp_server, wait_until
from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance
from tests.e2e.test_client_flow import Tab, clients_removed_afterwards, share_of, sign_in_and_first_run

pytestmark = [pytest.mark.zfs, pytest.mark.slow]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("alerts")) as running:
        yield running


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailServer]:
    with smtp_server(tmp_path) as server:
        yield server


class AlertsTab(Tab):
    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"alerts-{name}.png"), full_page=True)


@pytest.fixture
def tab(chromium: Any, appliance: Appliance) -> Iterator[AlertsTab]:
    opened = AlertsTab(chromium, appliance)
    yield opened
    opened.context.close()
    assert not opened.errors, opened.errors


def test_alerts_story(tab: AlertsTab, appliance: Appliance, mail: MailServer) -> None:
    with clients_removed_afterwards(appliance):
        sign_in_and_first_run(tab, appliance)
        add_channels(tab, mail)
        send_tests(tab, mail)
        failed_job_and_broken_channel_alerts(tab, appliance, mail)
        acknowledge_and_snooze(tab)
        client_report(tab, appliance)


def add_channels(tab: AlertsTab, mail: MailServer) -> None:
    page = tab.page
    page.click("header .areas >> text=Alerts")
    page.wait_for_url("**/alerts/")
    assert "No alert needs attention." in tab.main_text()
    page.click("text=Channels and metrics")
    page.wait_for_url("**/alerts/channels")
    form = page.locator("form.channel-form")
    form.locator("input[name=name]").fill("msp-mail")
    form.locator("select[name=kind]").select_option("email")
    form.locator("input[name=host]").fill("127.0.0.1")
    form.locator("input[name=port]").fill(str(mail.port))
    form.locator("input[name=username]").fill(SMTP_USER)
    form.locator("input[name=from]").fill("bulwark@clients-e2e.example")
    form.locator("input[name=to]").fill("noc@msp.example, oncall@msp.example")
    form.locator("input[name=quiet_hours]").fill("")
    form.locator("summary", has_text="TLS").click()
    form.locator("textarea[name=ca_pem]").fill(mail.cert_pem)
    form.locator("input[name=secret]").fill(SMTP_PASSWORD)
    page.click("#save-channel")
    page.wait_for_url("**/alerts/channels?message=*")
    assert "Channel msp-mail added." in tab.main_text()
    page.click("#add-channel")
    form.locator("input[name=name]").fill("psa-hook")
    form.locator("select[name=kind]").select_option("webhook")
    form.locator("input[name=url]").fill(f"http://127.0.0.1:{closed_port()}/bulwark")
    form.locator("input[name=secret]").fill("hook-signing-key")
    page.click("#save-channel")
    page.wait_for_url("**/alerts/channels?message=*")
    rows = page.locator("#channels tbody tr").all_inner_texts()
    assert len(rows) == 2 and SMTP_PASSWORD not in page.content() and "hook-signing-key" not in page.content()
    tab.shot("1-channels")


def send_tests(tab: AlertsTab, mail: MailServer) -> None:
    page = tab.page
    started = time.monotonic()
    page.click("#test-msp-mail")
    page.wait_for_url("**/alerts/notifications/*")
    page.locator("#test-result", has_text=re.compile("^sent$")).wait_for(timeout=20000)
    print(f"test send, click to 'sent' on the page: {time.monotonic() - started:.2f} s")
    assert "Delivered: accepted for 2 of 2 recipient(s)" in tab.main_text()
    assert mail.subjects() == ["[Bulwark clients-e2e] Test message for channel msp-mail"]
    tab.shot("2-test-sent")
    page.goto(tab.appliance.url + "/alerts/channels")
    page.click("#test-psa-hook")
    page.locator("#test-result", has_text=re.compile("^failed$")).wait_for(timeout=20000)
    assert "Not delivered: connection refused" in tab.main_text()
    tab.shot("3-test-failed")


def failed_job_and_broken_channel_alerts(tab: AlertsTab, appliance: Appliance, mail: MailServer) -> None:
    appliance.cli("client", "add", "broken", "--kind", "smb", "--schedule", "off")
    share = f"{appliance.pool}/clients/broken/share"  # gone under the client: its snapshots will fail
    for attempt in range(1, 41):  # zfs-fuse finds a fresh mount busy for a moment
        local_runner().run(["zfs", "unmount", "-f", share], ok_codes=range(256))
        if local_runner().run(["zfs", "destroy", "-r", share], ok_codes=range(256)).returncode == 0:
            break
        time.sleep(0.05 * attempt)
    raised = time.time()
    failed = appliance.cli("snapshot", "create", "broken", "--wait", ok_codes=(15,))
    assert "failed" in failed.err
    page = tab.page

    def both_listed() -> bool:
        page.goto(appliance.url + "/alerts/")
        text = tab.main_text()
        return "Take recovery points failed" in text or "failed (dataset:" in text

    wait_until(both_listed, timeout=20, step=0.5)
    text = tab.main_text()
    assert "alert channel psa-hook (webhook) cannot deliver: connection refused" in text
    # bulwarkd mailed the job's alert (the broken hook's own alert too, but never to the hook itself).
    wait_until(lambda: any("failed (dataset:" in s for s in mail.subjects()), timeout=20)
    job_mail = next(m for m in mail.mails if "failed (dataset:" in str(m.message["Subject"]))
    print(f"failed job to alert mail: {job_mail.received_at - raised:.2f} s (including the job's run)")
    assert any("cannot deliver" in s for s in mail.subjects())
    assert page.locator("#nav-alert-count").inner_text() == "2"  # on every page, in the navigation
    tab.shot("4-active")


def acknowledge_and_snooze(tab: AlertsTab) -> None:
    page = tab.page
    job_row = page.locator("tr", has_text="failed (dataset:")
    job_row.locator("button", has_text="Acknowledge").click()
    page.wait_for_url("**/alerts/?tab=active")
    assert "failed (dataset:" not in tab.main_text()
    hook_row = page.locator("tr", has_text="psa-hook")
    hook_row.locator("select[name=duration]").select_option("4h")
    hook_row.locator("button", has_text="Snooze").click()
    page.wait_for_url("**/alerts/?tab=active")
    assert "No alert needs attention." in tab.main_text()
    page.click("#tab-acknowledged")
    page.wait_for_url("**/alerts/?tab=acknowledged")
    assert "acknowledged by user:admin" in tab.main_text()
    tab.shot("5-acknowledged")
    page.click("#tab-snoozed")
    page.wait_for_url("**/alerts/?tab=snoozed")
    assert "snoozed until" in tab.main_text()
    tab.shot("6-snoozed")


def client_report(tab: AlertsTab, appliance: Appliance) -> None:
    appliance.cli("client", "add", "acme", "--kind", "smb", "--rpo", "1h", "--schedule", "off")
    (share_of(appliance, "acme") / "ledger.bin").write_bytes(b"L" * 4 * 1024 * 1024)
    appliance.cli("snapshot", "create", "acme", "--wait")
    (share_of(appliance, "acme") / "more.bin").write_bytes(b"M" * 6 * 1024 * 1024)
    appliance.cli("snapshot", "create", "acme", "--wait")
    assert '"points_made": 2' in appliance.cli("report", "client", "acme", "--json").out  # records the history
    page = tab.page
    page.goto(appliance.url + "/reports/")
    assert "Appliance summary: clients-e2e" in tab.main_text()
    tab.shot("7-summary")
    page.click("#summary-report >> text=acme")
    page.wait_for_url("**/reports/clients/acme*")
    text = tab.main_text()
    assert "Backup report: acme" in text and "recovery points made" in text and "within target" in text
    assert page.locator(".report-chart svg").count() == 1
    tab.shot("8-client-report")
    page.emulate_media(media="print")
    assert page.locator("header.topbar").is_hidden() and page.locator(".report-tools").is_hidden()
    tab.shot("9-client-report-print")
    page.emulate_media(media="screen")
