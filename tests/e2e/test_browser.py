"""The web UI in Chromium against a real running appliance: the first sign-in with the one-time password and
the forced change, the first-run wizard, wrong passwords and the lockout, roles, every main page, a scrub's
progress bar advancing, and the TOTP second factor. Screenshots of every main page go to
artifacts/screenshots/ui-*.png.

The tests run in order on one appliance (the first one sets the admin's password and finishes the wizard).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from appliance.system.runner import local_runner
from tests.e2e.conftest import SCREENSHOTS, Appliance, running_appliance

pytestmark = [pytest.mark.zfs, pytest.mark.slow]

ADMIN_PASSWORD = "admin passphrase e2e"
OPERATOR = ("olivia", "operator passphrase")
VIEWER = ("victor", "viewer passphrase")
# Data for a scrub that runs long enough to watch. zfs-fuse scrubs cached 128K records at ~1.5 GB/s, far
# faster than it writes them (~120 MB/s), so the data is written the slow-to-verify way: 4K records with
# SHA-256 checksums kept in 3 copies, and the pool file's pages are dropped from the page cache before
# the scrub, as on a real disk. Measured on this machine: 1 GiB written in ~20 s, scrubbed in ~14 s.
SCRUB_DATA = 1 << 30
SCRUB_DATASET_PROPERTIES = ["recordsize=4K", "checksum=sha256", "copies=3"]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, zfs_daemon: object) -> Iterator[Appliance]:
    with running_appliance(tmp_path_factory.mktemp("ui"), pool_file_size="6G") as running:
        for (name, password), role in ((OPERATOR, "operator"), (VIEWER, "viewer")):
            running.cli("user", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")
        yield running


class Tab:
    """A browser tab with its own cookies that records script errors and CSP violations."""

    def __init__(self, chromium: Any, appliance: Appliance) -> None:
        self.appliance = appliance
        self.context = chromium.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: (
                m.type == "error"
                and "Failed to load resource" not in m.text  # a 401/403/429 answer, which the tests ask for
                and self.errors.append(m.text)
            ),
        )

    def goto(self, path: str) -> Any:
        return self.page.goto(self.appliance.url + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SCREENSHOTS / f"ui-{name}.png"), full_page=True)

    def sign_in(self, username: str, password: str, *, totp_secret: str | None = None) -> None:
        self.goto("/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.click("#sign-in")
        self.page.wait_for_load_state()
        if totp_secret is not None:
            self.page.wait_for_url("**/login/totp")
            self.page.fill("input[name=code]", next_code(totp_secret))
            self.page.click("#verify-code")
            self.page.wait_for_load_state()

    def main_text(self) -> str:
        text: str = self.page.locator("main").inner_text()
        return text

    def nav_links(self) -> list[str]:
        links: list[str] = self.page.locator("header .areas a").all_inner_texts()
        return links

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture
def tab(chromium: Any, appliance: Appliance) -> Iterator[Tab]:
    opened = Tab(chromium, appliance)
    yield opened
    opened.close()


_used_steps: dict[str, int] = {}


def next_code(secret: str) -> str:
    """A code the appliance has not seen yet: the current step, or the next one (it accepts one step of
    clock drift) when the current one was used already — a code is accepted once."""
    generator = pyotp.TOTP(secret)
    step = max(int(time.time() // generator.interval), _used_steps.get(secret, -1) + 1)
    _used_steps[secret] = step
    return generator.at(step * generator.interval)


# --- the first sign-in -----------------------------------------------------------------------------


def test_first_login_password_change_and_wizard(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.goto("/")
    page.wait_for_url("**/login?next=/")
    assert page.locator("h1").inner_text() == "Sign in"
    tab.shot("01-login")

    tab.sign_in("admin", appliance.password)
    page.wait_for_url("**/password")
    assert "You signed in with a one-time password" in tab.main_text()
    assert tab.nav_links() == []  # nowhere to go before the password is changed
    page.fill("input[name=current]", appliance.password)
    page.fill("input[name=new]", "short")
    page.fill("input[name=confirm]", "short")
    page.click("text=Save password")  # the browser's own minlength check keeps the form
    assert page.url.endswith("/password")
    page.fill("input[name=new]", ADMIN_PASSWORD)
    page.fill("input[name=confirm]", ADMIN_PASSWORD + "!")
    page.click("text=Save password")
    assert "The two new passwords differ." in tab.main_text()
    page.fill("input[name=current]", appliance.password)
    page.fill("input[name=new]", ADMIN_PASSWORD)
    page.fill("input[name=confirm]", ADMIN_PASSWORD)
    tab.shot("02-password-change")
    page.click("text=Save password")

    page.wait_for_url("**/setup/")
    tab.goto("/jobs/")  # anywhere else: back to the wizard until it is done
    page.wait_for_url("**/setup/")
    text = tab.main_text()
    assert "Welcome to Bulwark" in text and f"Pool {appliance.pool}" in text and "ONLINE" in text
    tab.shot("03-setup-wizard")
    page.fill("input[name=hostname]", "bad_name")  # the browser lets it through only without the pattern
    page.evaluate("document.querySelector('input[name=hostname]').removeAttribute('pattern')")
    page.click("#finish-setup")
    assert "host name 'bad_name' must be" in tab.main_text()
    page.fill("input[name=hostname]", "branch-office")
    page.select_option("select[name=timezone]", "Europe/Berlin")
    page.click("#finish-setup")
    page.wait_for_url(appliance.url + "/")
    assert page.locator("h1").inner_text() == "branch-office"
    assert tab.nav_links() == [
        "Dashboard",
        "Clients",
        "Storage",
        "Disks",
        "Offsite",
        "Alerts",
        "Jobs",
        "Settings",
        "Remote",
        "Users",
        "Audit",
    ]
    card = page.locator("#pool-card").inner_text()
    assert appliance.pool in card and "ONLINE" in card
    assert "Europe/Berlin" in tab.main_text()
    tab.shot("04-dashboard")


def test_wrong_password_and_lockout(tab: Tab, appliance: Appliance) -> None:
    appliance.cli("user", "add", "lockme", "--role", "viewer", "--password-stdin", stdin="lockme passphrase\n")
    for _ in range(5):
        tab.sign_in("lockme", "not the passphrase")
        assert "Wrong user name or password." in tab.main_text()
    tab.sign_in("lockme", "lockme passphrase")  # the right password, too late
    alert = tab.page.locator("[role=alert]").inner_text()
    assert alert == "Sign-in is locked: too many failed sign-ins for this user. Try again in 15 minute(s)."
    assert tab.page.url.endswith("/login")
    tab.shot("14-lockout")
    tab.sign_in(*VIEWER)  # other accounts from the same browser are not locked
    tab.page.wait_for_url(appliance.url + "/")


# --- roles -----------------------------------------------------------------------------------------


def test_operator_sees_no_admin_pages(tab: Tab, appliance: Appliance) -> None:
    tab.sign_in(*OPERATOR)
    tab.page.wait_for_url(appliance.url + "/")
    assert "Users" not in tab.nav_links() and "Audit" in tab.nav_links()
    assert tab.page.locator("#scrub-now").count() == 1
    response = tab.goto("/users/")
    assert response.status == 403
    assert tab.page.locator("h1").inner_text() == "Not allowed"
    assert "Your role (operator) does not allow this." in tab.main_text()
    tab.shot("13-not-allowed")


def test_viewer_reads_only(tab: Tab, appliance: Appliance) -> None:
    tab.sign_in(*VIEWER)
    tab.page.wait_for_url(appliance.url + "/")
    assert "Users" not in tab.nav_links() and "Audit" not in tab.nav_links()
    assert tab.page.locator("#scrub-now").count() == 0  # no button a viewer cannot use
    assert tab.goto("/users/").status == 403
    assert tab.goto("/audit/").status == 403
    tab.goto("/settings/")
    for field in ("input[name=hostname]", "select[name=timezone]", "input[name=require_totp]"):
        assert tab.page.locator(field).is_disabled(), field  # inside the disabled fieldset
    assert "Only admins change settings." in tab.main_text()
    tab.shot("12b-settings-viewer")


# --- the admin's pages -----------------------------------------------------------------------------


def test_admin_pages(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.sign_in("admin", ADMIN_PASSWORD)
    page.wait_for_url(appliance.url + "/")

    tab.goto("/storage/")
    assert f"Pool {appliance.pool}" in tab.main_text() and page.locator("table.vdevs").count() == 1
    tab.shot("05-storage")

    tab.goto("/users/")
    page.fill("input[name=username]", "nora")
    page.select_option("select[aria-label='new user role']", "operator")
    page.click("#add-user")
    once = page.locator("#shown-once").inner_text()
    assert len(once) == 23 and "One-time password for nora" in tab.main_text()
    rows = page.locator("table tbody tr").all_inner_texts()
    assert any(r.startswith("nora") and "one-time password" in r for r in rows)
    tab.shot("08-users")
    tab.goto("/users/")
    assert once not in page.content()  # shown once

    page.fill("input[name=name]", "monitoring")
    page.click("text=Create token")
    secret = page.locator("#shown-once").inner_text()
    assert secret.startswith("bwk_")
    assert "<td>monitoring</td><td>viewer</td>" in page.content()

    tab.goto("/audit/")
    rows = page.locator("table.audit tbody tr").all_inner_texts()
    assert any("user:admin\t127.0.0.1\tuser.create\tnora" in r for r in rows), rows[:5]
    assert any("user:admin\t127.0.0.1\tsetup.completed" in r for r in rows)
    tab.shot("11-audit")

    tab.goto("/settings/")
    assert page.locator("input[name=hostname]").input_value() == "branch-office"
    assert page.locator("input[name=hostname]").is_editable()
    tab.shot("12-settings")


# --- a long job ------------------------------------------------------------------------------------


@contextlib.contextmanager
def pool_filled(appliance: Appliance) -> Iterator[None]:
    """SCRUB_DATA incompressible bytes in a dataset of the appliance's pool (two writers), destroyed after."""
    runner = local_runner()
    dataset = f"{appliance.pool}/scrub-load"
    try:
        _fill(runner, dataset, appliance)
        yield
    finally:
        for attempt in range(1, 21):  # zfs-fuse may find it busy while the mount settles
            if runner.run(["zfs", "destroy", "-r", dataset], ok_codes=range(256), timeout=120).returncode == 0:
                break
            if runner.run(["zfs", "list", dataset], ok_codes=range(256)).returncode != 0:
                break
            time.sleep(0.1 * attempt)


def _fill(runner: Any, dataset: str, appliance: Appliance) -> None:
    options = [arg for prop in SCRUB_DATASET_PROPERTIES for arg in ("-o", prop)]
    runner.run(["zfs", "create", *options, dataset], timeout=60)
    mountpoint = Path(runner.run(["zfs", "get", "-H", "-o", "value", "mountpoint", dataset]).out.strip())
    chunk = os.urandom(16 << 20)  # random, so nothing compresses (and dedup is off)

    def write(index: int) -> None:
        with (mountpoint / f"load-{index}").open("wb") as out:
            for _ in range(SCRUB_DATA // 2 // len(chunk)):
                out.write(chunk)

    writers = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    os.sync()
    pool_file = appliance.data_dir / "pool" / f"{appliance.pool}.img"
    fd = os.open(pool_file, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the scrub reads the disk, not the page cache
    finally:
        os.close(fd)


def test_scrub_progress_bar_advances(tab: Tab, appliance: Appliance) -> None:
    with pool_filled(appliance):
        watch_a_scrub(tab, appliance)


def watch_a_scrub(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.sign_in(*OPERATOR)
    page.wait_for_url(appliance.url + "/")
    page.click("#scrub-now")
    page.wait_for_url("**/jobs/*")

    values: list[float] = []
    shot_taken = False
    deadline = time.monotonic() + 180
    while True:
        badge = page.locator("#job-progress .badge").inner_text()
        value = page.locator("#job-progress progress").get_attribute("value") if badge == "running" else None
        if value is not None and (not values or float(value) != values[-1]):
            values.append(float(value))
            if not shot_taken and 5 < float(value) < 95:
                tab.shot("07-job-progress")
                shot_taken = True
        if badge in ("succeeded", "failed", "cancelled", "interrupted"):
            break
        assert time.monotonic() < deadline, f"the scrub did not finish; progress seen: {values}"
        time.sleep(0.25)
    assert badge == "succeeded", tab.main_text()
    intermediate = [v for v in values if v < 100]
    assert len(intermediate) >= 2, f"the bar did not move before the end: {values}"
    assert values == sorted(values), values
    assert shot_taken
    assert "scrub completed" in tab.main_text()
    assert page.locator("#job-progress progress").get_attribute("value") == "100.0"
    print(f"progress values seen on the job page: {values}")

    tab.goto("/jobs/")
    assert "pool.scrub" in tab.main_text() and "succeeded" in tab.main_text()
    tab.shot("06-jobs")
    tab.goto("/")
    tab.shot("04b-dashboard-after-scrub")


# --- the second factor -----------------------------------------------------------------------------


def test_totp_enrolment_and_sign_in(tab: Tab, appliance: Appliance) -> None:
    page = tab.page
    tab.sign_in("admin", ADMIN_PASSWORD)
    page.wait_for_url(appliance.url + "/")
    tab.goto("/account/")
    assert "Remote sign-ins through the MSP tunnel are impossible without it." in tab.main_text()
    page.click("#setup-totp")
    page.wait_for_url("**/account/totp")
    assert page.locator(".qr svg").count() == 1
    secret = page.locator("#totp-secret").inner_text()
    tab.shot("09-account-totp")
    page.fill("input[name=code]", "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.click("#enable-totp")
    assert "That code does not match" in tab.main_text()
    page.fill("input[name=code]", next_code(secret))
    page.click("#enable-totp")
    page.wait_for_url("**/account/")
    assert "Sign-ins ask for a code from your authenticator." in tab.main_text()

    page.click("#sign-out")
    page.wait_for_url("**/login")
    tab.sign_in("admin", ADMIN_PASSWORD)
    page.wait_for_url("**/login/totp")
    assert tab.nav_links() == []
    page.fill("input[name=code]", "123456" if pyotp.TOTP(secret).now() != "123456" else "654321")
    page.click("#verify-code")
    assert "That code is wrong or was already used." in tab.main_text()
    tab.shot("10-totp-sign-in")
    page.fill("input[name=code]", next_code(secret))
    page.click("#verify-code")
    page.wait_for_url(appliance.url + "/")
    assert page.locator("h1").inner_text() == "branch-office"
