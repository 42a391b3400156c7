"""A replaying ``smartctl`` first on the runner's PATH: it prints a recorded real output (tests/data/smart)
and exits with its recorded status, and logs the arguments it was given."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.system import runner as runner_module

DATA = Path(__file__).resolve().parents[2] / "data" / "smart"

REPLAY = """#!/bin/sh
here=$(dirname "$0")
printf '%s\\n' "$*" >> "$here/argv.log"
cat "$here/replay.json"
exit $(cat "$here/replay.status")
"""

Replay = Callable[..., Path]


@pytest.fixture
def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Replay:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "smartctl"
    script.write_text(REPLAY)
    script.chmod(0o755)
    monkeypatch.setattr(runner_module, "SYSTEM_PATH", f"{bindir}:{runner_module.SYSTEM_PATH}")

    def load(name: str, status: int | None = None) -> Path:
        data = (DATA / name).read_bytes()
        (bindir / "replay.json").write_bytes(data)
        code = json.loads(data)["smartctl"]["exit_status"] if status is None else status
        (bindir / "replay.status").write_text(str(code))
        return bindir / "argv.log"

    return load
