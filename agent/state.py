"""The agent's state directory: the credential (0600) and the local hash cache."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from agent.transport import AgentError


def default_state_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", "C:\\ProgramData")) / "Bulwark" / "agent"
    if os.geteuid() == 0:
        return Path("/var/lib/bulwark-agent")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "bulwark-agent"


def _write_private(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def save_enrollment(state_dir: Path, data: dict[str, Any]) -> Path:
    path = state_dir / "agent.json"
    _write_private(path, data)
    return path


def load_enrollment(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "agent.json"
    if not path.exists():
        raise AgentError(f"this agent is not enrolled (no {path})", "run 'bulwark-agent enroll --server … --code …'")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def load_cache(state_dir: Path) -> dict[str, list[Any]]:
    path = state_dir / "cache.json"
    try:
        data: dict[str, list[Any]] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def save_cache(state_dir: Path, cache: dict[str, list[Any]]) -> None:
    _write_private(state_dir / "cache.json", cache)
