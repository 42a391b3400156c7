"""The command runner of the OpenZFS test machine (``appliance.system.vmrunner``) against its real guest agent:
bytes pass exactly, exit statuses and failures are those of a local run, streams stay bounded, a timeout
or a reader that goes away stops the command in the machine, and several commands run at once."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.system.errors import CommandFailed, CommandNotFound, CommandTimeout, InvalidInput
from appliance.system.runner import PIPE, STDERR_KEEP
from appliance.system.vm import OpenZfsVm
from appliance.system.vmrunner import VmRunner

pytestmark = pytest.mark.openzfs
MiB = 1024 * 1024


@pytest.fixture
def runner(openzfs_vm: OpenZfsVm) -> Iterator[VmRunner]:
    assert openzfs_vm.runner is not None
    yield openzfs_vm.runner
    assert openzfs_vm.runner.running() == []


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def leftovers(runner: VmRunner, name: str) -> list[str]:
    """Processes named ``name`` in the machine."""
    return [line for line in runner.run(["ps", "-o", "pid,args"]).out.splitlines()[1:] if name in line.split()[1:2]]


def test_stdin_stdout_and_stderr_are_byte_exact(runner: VmRunner) -> None:
    every_byte = bytes(range(256)) * 64
    data = every_byte + os.urandom(3 * MiB) + b"\r\n\0no newline at the end"
    assert runner.run(["cat"], input=data).stdout == data
    text = bytes(range(1, 256)).decode("latin-1")  # (an argument is text without NUL: UTF-8 in the machine)
    both = runner.shell('cat; printf "%s" "$1" >&2', text, input=every_byte)
    assert (both.stdout, both.stderr) == (every_byte, text.encode())
    noisy = runner.shell("head -c $1 /dev/zero | tr '\\0' x >&2; echo done", str(STDERR_KEEP * 3))
    assert (noisy.stdout, noisy.stderr) == (b"done\n", b"x" * STDERR_KEEP)  # (the end of stderr is kept)
    assert runner.run(["true"]).stdout == runner.run(["true"]).stderr == b""


def test_exit_statuses_and_failures_are_those_of_a_local_run(runner: VmRunner) -> None:
    assert runner.shell("exit 3", ok_codes=(3,)).returncode == 3
    with pytest.raises(CommandFailed) as failed:
        runner.shell("echo oops >&2; exit 1")
    assert (failed.value.argv[0], failed.value.returncode, failed.value.stderr) == ("/bin/sh", 1, "oops\n")
    assert runner.shell("kill -9 $$", ok_codes=(-9,)).returncode == -9
    with pytest.raises(CommandNotFound):
        runner.run(["no-such-program"])
    with pytest.raises(CommandNotFound):
        runner.run(["no-such-program"], input=b"stdin that is never read")
    with pytest.raises(InvalidInput):
        runner.run("zfs list")  # type: ignore[arg-type]
    assert runner.run(["sh", "-c", 'echo "$BULWARK_X $PATH"'], env={"BULWARK_X": "y"}).out.startswith("y /usr/")
    for _ in range(10):  # (more commands than ports: none of the failures above kept one)
        runner.run(["true"])


def test_a_timeout_kills_the_command_in_the_machine(runner: VmRunner) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout):
        runner.run(["sleep", "300"], timeout=1)
    assert time.monotonic() - started < 15
    assert leftovers(runner, "sleep") == []
    with pytest.raises(CommandTimeout):
        with runner.stream(["sleep", "300"], timeout=1):
            pass
    assert leftovers(runner, "sleep") == []


def test_streams_both_ways_stay_bounded(runner: VmRunner) -> None:
    """100 MiB into the machine, out of it, and out and back in through this process, never held here."""
    chunks = random.Random(7)
    before = peak = rss_mib()
    sent = hashlib.sha256()
    with runner.stream(["dd", "of=/tmp/random", "bs=65536"], stdin=PIPE) as into:
        for _ in range(100):
            chunk = chunks.randbytes(MiB)
            sent.update(chunk)
            into.stdin.write(chunk)
        peak = max(peak, rss_mib())

    def read_back(path: str) -> str:
        nonlocal peak
        digest = hashlib.sha256()
        with runner.stream(["dd", f"if={path}", "bs=65536"], stdout=PIPE) as out:
            while chunk := out.stdout.read(MiB):
                digest.update(chunk)
                peak = max(peak, rss_mib())
        return digest.hexdigest()

    assert read_back("/tmp/random") == sent.hexdigest()
    with (
        runner.stream(["dd", "if=/tmp/random", "bs=65536"], stdout=PIPE) as out,
        runner.stream(["dd", "of=/tmp/copy", "bs=65536"], stdin=out.stdout),
    ):
        out.stdout.close()  # (the second command reads it now)
        peak = max(peak, rss_mib())
    assert read_back("/tmp/copy") == sent.hexdigest()
    runner.run(["rm", "/tmp/random", "/tmp/copy"])
    assert peak - before < 40, f"{peak - before:.0f} MiB more while streaming 100 MiB"


def test_a_reader_that_goes_away_stops_the_writer(runner: VmRunner) -> None:
    with pytest.raises(CommandFailed) as killed:
        with runner.stream(["dd", "if=/dev/zero", "bs=65536"], stdout=PIPE) as out:
            assert out.stdout.read(MiB) == bytes(MiB)
    assert killed.value.returncode == -9
    assert leftovers(runner, "dd") == []


def test_a_command_that_stops_reading_makes_the_writer_see_a_broken_pipe(runner: VmRunner) -> None:
    with pytest.raises(BrokenPipeError):
        with runner.stream(["head", "-c", "10"], stdin=PIPE, stdout=PIPE) as proc:
            for _ in range(1000):
                proc.stdin.write(bytes(64 * 1024))
                proc.stdin.flush()
    with runner.stream(["head", "-c", "10"], stdin=PIPE, stdout=PIPE) as proc:
        proc.stdin.write(b"0123456789abcdef")
        proc.stdin.close()
        assert proc.stdout.read() == b"0123456789"


def test_commands_run_at_once_and_are_listed(runner: VmRunner) -> None:
    with pytest.raises(CommandFailed), runner.stream(["sleep", "30"]) as sleeper:  # (killed: a failure)
        [entry] = runner.running()
        assert (entry.argv, entry.kind, entry.pid) == (("sleep", "30"), "stream", sleeper.pid)
        assert sleeper.wait(0.1) is None
        sleeper.kill()
        assert sleeper.wait(10) == -9
    results: list[float] = []

    def one() -> None:
        t = time.monotonic()
        runner.run(["sleep", "2"])
        results.append(time.monotonic() - t)

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 5
    assert time.monotonic() - started < 8  # five 2-second commands at once, not one after the other
