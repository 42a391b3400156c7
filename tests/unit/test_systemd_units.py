"""The systemd unit files are valid and point at programs that exist (systemd-analyze verify): the
appliance's two units, and the agent's service and timer for Linux clients."""

import shutil
from pathlib import Path

import pytest

from appliance.system.runner import local_runner

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted(u for u in (ROOT / "systemd").glob("*.service") if not u.name.startswith("bulwark-agent"))
AGENT_UNITS = ("bulwark-agent.service", "bulwark-agent.timer")
# The installed locations, and where they are in this checkout.
INSTALLED = {"/opt/bulwark": str(ROOT), "/usr/bin/bulwark-agent": str(ROOT / ".venv/bin/bulwark-agent")}


def test_units_exist():
    assert {u.name for u in UNITS} == {"bulwarkd.service", "bulwark-web.service"}
    assert all((ROOT / "systemd" / name).is_file() for name in AGENT_UNITS)


def verify(units: list[Path], tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    assert (ROOT / ".venv/bin/bulwark").exists(), "the virtualenv must be set up (./dev.sh setup)"
    copies = []
    for unit in units:
        text = unit.read_text()
        for installed, here in INSTALLED.items():
            text = text.replace(installed, here)
        copy = tmp_path / unit.name
        copy.write_text(text)
        copies.append(copy)
    result = local_runner().run(["systemd-analyze", "verify", *map(str, copies)], ok_codes=(0, 1))
    names = [u.name for u in units]
    problems = [
        line
        for line in result.err.splitlines()
        if any(name in line for name in names) or "Unknown" in line or "not executable" in line
    ]
    assert result.returncode == 0 and not problems, result.err


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies(unit, tmp_path):
    verify([unit], tmp_path)


def test_agent_units_verify(tmp_path):
    verify([ROOT / "systemd" / name for name in AGENT_UNITS], tmp_path)


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_runs_a_bulwark_subcommand(unit):
    exec_lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(exec_lines) == 1
    argv = exec_lines[0].removeprefix("ExecStart=").split()
    assert argv[0] == "/opt/bulwark/.venv/bin/bulwark"
    from appliance.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert args.command in ("daemon", "web")


def test_agent_unit_runs_a_backup():
    text = (ROOT / "systemd/bulwark-agent.service").read_text()
    [exec_line] = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = exec_line.removeprefix("ExecStart=").split()
    assert argv[0] == "/usr/bin/bulwark-agent" and "backup" in argv
    assert "SuccessExitStatus=75" in text  # outside the backup window: the timer simply tries again
    assert "EnvironmentFile=-/etc/default/bulwark-agent" in text  # paths may come from the appliance
