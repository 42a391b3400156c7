"""The systemd unit files are valid and point at programs that exist (systemd-analyze verify)."""

import shutil
from pathlib import Path

import pytest

from appliance.system.runner import local_runner

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "systemd").glob("*.service"))


def test_units_exist():
    assert {u.name for u in UNITS} == {"bulwarkd.service", "bulwark-web.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies(unit, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name the installed location /opt/bulwark; verify them against this checkout.
    text = unit.read_text().replace("/opt/bulwark", str(ROOT))
    assert (ROOT / ".venv/bin/bulwark").exists(), "the virtualenv must be set up (./dev.sh setup)"
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = local_runner().run(["systemd-analyze", "verify", str(copy)], ok_codes=(0, 1))
    problems = [
        line for line in result.err.splitlines() if unit.name in line or "Unknown" in line or "not executable" in line
    ]
    assert result.returncode == 0 and not problems, result.err


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_runs_a_bulwark_subcommand(unit):
    exec_lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(exec_lines) == 1
    argv = exec_lines[0].removeprefix("ExecStart=").split()
    assert argv[0] == "/opt/bulwark/.venv/bin/bulwark"
    from appliance.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert args.command in ("daemon", "web")
