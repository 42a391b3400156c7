"""Running ``smartctl`` (through the runner) for a device's report and its self-tests.

smartctl's exit status is a bitmask, not success/failure: every status is accepted here and read into the
report; only a document that is not smartctl JSON is an error. A missing ``smartctl`` is a clear error.
"""

from __future__ import annotations

import re

from appliance.disks import smart
from appliance.disks.smart import SmartReport
from appliance.system.errors import InvalidInput
from appliance.system.runner import Runner

ALL_STATUSES = tuple(range(256))
DEVICE_RE = re.compile(r"^/dev/[A-Za-z0-9._:+-]+(/[A-Za-z0-9._:+-]+)*$")
DEVICE_TYPE_RE = re.compile(r"^[a-z0-9+,]{1,40}$")
TEST_KINDS = ("short", "long")
TIMEOUT = 60.0


def check_device(path: str) -> str:
    if not isinstance(path, str) or not DEVICE_RE.fullmatch(path) or ".." in path.split("/"):
        raise InvalidInput(f"not a device path under /dev: {path!r}")
    return path


def _argv(device: str, device_type: str | None, *options: str) -> list[str]:
    argv = ["smartctl", "-j", *options]
    if device_type:
        if not DEVICE_TYPE_RE.fullmatch(device_type):
            raise InvalidInput(f"not a smartctl device type: {device_type!r}")
        argv += ["-d", device_type]
    return [*argv, check_device(device)]


def read(runner: Runner, device: str, device_type: str | None = None) -> SmartReport:
    """``smartctl -j -x DEVICE`` parsed; the process's exit status is the report's."""
    result = runner.run(_argv(device, device_type, "-x"), ok_codes=ALL_STATUSES, timeout=TIMEOUT)
    return smart.parse_text(result.stdout, result.returncode)


def start_self_test(runner: Runner, device: str, kind: str, device_type: str | None = None) -> SmartReport:
    """Ask the drive to start a short or long (extended) self-test; it runs inside the drive."""
    if kind not in TEST_KINDS:
        raise InvalidInput(f"a self-test is short or long, not {kind!r}")
    result = runner.run(_argv(device, device_type, "-t", kind), ok_codes=ALL_STATUSES, timeout=TIMEOUT)
    return smart.parse_text(result.stdout, result.returncode)
