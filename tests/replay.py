"""Recorded outputs of real programs, and a runner that replays them (test support, not product code).

A recording directory (``tests/data/<program>-<version>/``) holds ``NAME.out`` (exact stdout),
``NAME.err`` (exact stderr) and ``index.tsv`` (name, exit status, seconds, command[, stdin]) per step.
:class:`ReplayRunner` implements :class:`appliance.system.runner.Runner` for the driver under test: each
call must be the next expected argv, and gets that step's recorded stdout, stderr and exit status.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from appliance.system.errors import CommandFailed
from appliance.system.runner import DEFAULT_TIMEOUT, CommandResult, RunningCommand, Stream

DATA = Path(__file__).parent / "data"
OPENZFS = DATA / "openzfs-2.3.2"
ZFS_FUSE = DATA / "zfs-fuse-0.7.0"


@dataclass(frozen=True)
class Recording:
    """One recorded step."""

    name: str
    command: str  # as the index shows it (OpenZFS steps may be shell pipelines)
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def argv(self) -> list[str]:
        """The command as an argv list (only for steps that ran one program without shell syntax)."""
        argv = shlex.split(self.command)
        if any(token in ("|", "&&", ">", "<", "2>&1") for token in argv) or "$(" in self.command:
            raise ValueError(f"recording {self.name} ran a shell command, not one argv: {self.command}")
        return argv

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    def failure(self) -> CommandFailed:
        """The runner's error for this step (it must have failed)."""
        assert self.returncode != 0, f"{self.name} succeeded"
        return CommandFailed(self.argv, self.returncode, self.err)


class Recordings(Mapping[str, Recording]):
    """The steps of one recording directory, by name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._steps: dict[str, Recording] = {}
        lines = (directory / "index.tsv").read_text().splitlines()
        for line in lines[1:]:
            name, rc, _seconds, command, *_ = line.split("\t")
            if not (directory / f"{name}.out").exists():
                continue  # (a directory may hold only the steps its tests use; the index lists all)
            self._steps[name] = Recording(
                name,
                command,
                int(rc),
                (directory / f"{name}.out").read_bytes(),
                (directory / f"{name}.err").read_bytes(),
            )

    def __getitem__(self, name: str) -> Recording:
        return self._steps[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)


class ReplayRunner:
    """A :class:`~appliance.system.runner.Runner` that answers each expected command with a recording.

    ``steps`` are the recordings in the order the code under test must run them; each is expected with
    exactly the argv it was recorded with."""

    def __init__(self, *steps: Recording) -> None:
        self._expected: list[tuple[list[str], Recording]] = [(step.argv, step) for step in steps]
        self.calls: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        ok_codes: Sequence[int] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        args = list(argv)
        self.calls.append(args)
        if not self._expected:
            raise AssertionError(f"unexpected command {args} (all recordings are used up)")
        expected, recording = self._expected.pop(0)
        if args != expected:
            raise AssertionError(f"expected command {expected} (recording {recording.name}), got {args}")
        result = CommandResult(tuple(args), recording.returncode, recording.stdout, recording.stderr, 0.0)
        if recording.returncode not in ok_codes:
            raise CommandFailed(args, recording.returncode, result.err)
        return result

    def stream(
        self,
        argv: Sequence[str],
        *,
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> contextlib.AbstractContextManager[Stream]:
        raise AssertionError(f"a replay cannot stream: {list(argv)}")

    def running(self) -> list[RunningCommand]:
        return []

    def assert_done(self) -> None:
        """Every expected command was run."""
        left = [recording.name for _, recording in self._expected]
        assert not left, f"recordings not replayed: {left}"
