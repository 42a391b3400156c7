"""The command runner (the one door to the operating system) with real programs. No root needed."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from appliance.system.errors import CommandFailed, CommandNotFound, CommandTimeout, InvalidInput
from appliance.system.runner import PIPE, SYSTEM_PATH, LocalRunner, local_runner
from tests.zfs_fixtures import wait_for

LOGGER = "bulwark.command"


@pytest.fixture
def runner() -> LocalRunner:
    return LocalRunner()  # its own registry, not the process-wide one


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for an uninterested parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize(
    "argv",
    ["ls -l", b"ls", [], (), ["echo", "a\0b"], ["echo", 1], ["echo", None]],
    ids=["string", "bytes", "empty list", "empty tuple", "NUL byte", "int", "None"],
)
def test_argv_lists_only(runner: LocalRunner, argv: object) -> None:
    with pytest.raises(InvalidInput):
        runner.run(argv)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        with runner.stream(argv):  # type: ignore[arg-type]
            pass
    with pytest.raises(InvalidInput):
        runner.spawn(argv)  # type: ignore[arg-type]


def test_run_captures_output(runner: LocalRunner) -> None:
    result = runner.run(["sh", "-c", 'printf "out\\377"; printf err >&2'])
    assert (result.argv, result.returncode, result.stdout, result.stderr) == (
        ("sh", "-c", 'printf "out\\377"; printf err >&2'),
        0,
        b"out\xff",
        b"err",
    )
    assert result.out == "out\udcff"  # undecodable bytes kept, not dropped
    assert result.err == "err"
    assert result.duration > 0
    assert runner.run(["cat"], input=b"fed on stdin").stdout == b"fed on stdin"
    assert runner.run(["cat"]).stdout == b""  # stdin is /dev/null unless input is given


def test_fixed_environment(runner: LocalRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nowhere")
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    result = runner.run(["sh", "-c", 'echo "$PATH|$SECRET_TOKEN|$EXTRA|$LC_ALL"'], env={"EXTRA": "x"})
    assert result.out == f"{SYSTEM_PATH}||x|C.UTF-8\n"


def test_command_failed_carries_argv_status_and_stderr(runner: LocalRunner) -> None:
    argv = ["sh", "-c", "echo partial; echo 'it broke' >&2; exit 3"]
    with pytest.raises(CommandFailed) as exc_info:
        runner.run(argv)
    failure = exc_info.value
    assert (failure.argv, failure.returncode, failure.stderr) == (argv, 3, "it broke\n")
    assert str(failure) == "sh exited with status 3: it broke"
    assert failure.to_dict()["code"] == "command_failed"
    assert runner.run(argv, ok_codes=(0, 3)).returncode == 3


def test_command_not_found(runner: LocalRunner) -> None:
    for program in ("no-such-program-bulwark", "/nonexistent/bin/tool"):
        with pytest.raises(CommandNotFound) as exc_info:
            runner.run([program, "--help"])
        assert str(exc_info.value) == f"The program {program} is not installed."
        with pytest.raises(CommandNotFound):
            runner.spawn([program])
    assert runner.running() == []


def test_timeout_kills_the_child_and_its_children(runner: LocalRunner, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as exc_info:
        runner.run(["sh", "-c", f"sleep 100 & echo $! > {pids}; echo $$ >> {pids}; sleep 100"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert str(exc_info.value) == "sh did not finish within 0.5 s and was stopped."
    grandchild, child = (int(p) for p in pids.read_text().split())
    wait_for("the killed processes to go", lambda: gone(grandchild) and gone(child), timeout=5)
    assert runner.running() == []


def test_registry_shows_running_commands(runner: LocalRunner, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    argv = ["sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.01; done"]
    worker = threading.Thread(target=runner.run, args=(argv,))
    worker.start()
    try:
        [entry] = wait_for("the command to be registered", runner.running)
        assert (entry.argv, entry.kind) == (tuple(argv), "run")
        assert entry.pid > 0 and not gone(entry.pid)
        shown = entry.to_dict()
        assert shown["argv"] == argv and shown["kind"] == "run"
        assert 0 <= float(shown["seconds"]) < 60  # type: ignore[arg-type]
    finally:
        flag.touch()
        worker.join(timeout=10)
    assert runner.running() == []


def test_stream_with_pipes_both_ways(runner: LocalRunner) -> None:
    with runner.stream(["tr", "a-z", "A-Z"], stdin=PIPE, stdout=PIPE) as proc:
        assert [c.kind for c in runner.running()] == ["stream"]
        proc.stdin.write(b"hello, stream")
        proc.stdin.close()
        assert proc.stdout.read() == b"HELLO, STREAM"
    assert proc.proc.returncode == 0
    assert runner.running() == []


def test_stream_to_and_from_files(runner: LocalRunner, tmp_path: Path) -> None:
    (tmp_path / "in").write_bytes(b"x" * 300_000)
    with (tmp_path / "in").open("rb") as src, (tmp_path / "out").open("wb") as dst:
        with runner.stream(["cat"], stdin=src, stdout=dst):
            pass
    assert (tmp_path / "out").read_bytes() == b"x" * 300_000


def test_stream_failure_raises_with_stderr(runner: LocalRunner) -> None:
    argv = ["sh", "-c", "cat > /dev/null; echo 'bad stream' >&2; exit 4"]
    with pytest.raises(CommandFailed) as exc_info:
        with runner.stream(argv, stdin=PIPE) as proc:
            proc.stdin.write(b"data")
    assert (exc_info.value.argv, exc_info.value.returncode, exc_info.value.stderr) == (argv, 4, "bad stream\n")
    assert runner.running() == []


def test_stream_timeout_and_errors_in_the_block_kill_the_child(runner: LocalRunner) -> None:
    with pytest.raises(CommandTimeout):
        with runner.stream(["sleep", "100"], timeout=0.3) as proc:
            proc.proc.wait(timeout=10)
    with pytest.raises(ValueError, match="consumer gave up"):
        with runner.stream(["sleep", "100"]) as proc:
            raise ValueError("consumer gave up")
    assert proc.proc.returncode == -signal.SIGKILL
    assert runner.running() == []


def test_spawn_and_stop_a_service(runner: LocalRunner, tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    with log.open("wb") as out:
        service = runner.spawn(["sh", "-c", "echo ready; exec sleep 100"], stdout=out, cwd=str(tmp_path))
    assert service.poll() is None
    [entry] = runner.running()
    assert (entry.kind, entry.pid) == ("service", service.pid)
    wait_for("the service to write", lambda: log.read_bytes() == b"ready\n", timeout=10)
    assert service.stop(timeout=10) == -signal.SIGTERM
    assert gone(service.pid)
    assert runner.running() == []
    assert service.stop() == -signal.SIGTERM  # stopping twice is harmless


def test_stop_kills_a_service_that_ignores_sigterm(runner: LocalRunner, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    service = runner.spawn(["sh", "-c", f"trap '' TERM; touch {ready}; while :; do sleep 0.05; done"])
    wait_for("the service to start", ready.exists, timeout=10)
    assert service.stop(timeout=0.3) == -signal.SIGKILL
    assert runner.running() == []


def test_a_service_that_exits_leaves_the_registry(runner: LocalRunner) -> None:
    service = runner.spawn(["sh", "-c", "exit 7"])
    assert wait_for("the service to exit", lambda: service.poll() is not None, timeout=10)
    assert service.poll() == 7
    assert runner.running() == []


def test_spawn_environment(runner: LocalRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULWARK_TEST_VALUE", "inherited")
    for inherit, expected in ((False, "|given\n"), (True, "inherited|given\n")):
        out_path = tmp_path / f"env-{inherit}"
        with out_path.open("wb") as out:
            service = runner.spawn(
                ["sh", "-c", 'echo "$BULWARK_TEST_VALUE|$GIVEN"'],
                stdout=out,
                env={"GIVEN": "given"},
                inherit_env=inherit,
            )
        wait_for("the service to exit", lambda s=service: s.poll() is not None, timeout=10)  # type: ignore[misc]
        assert out_path.read_text() == expected


def test_logs_every_run_with_its_duration(runner: LocalRunner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    runner.run(["true"])
    with runner.stream(["true"]):
        pass
    with pytest.raises(CommandTimeout):
        runner.run(["sleep", "10"], timeout=0.1)
    service = runner.spawn(["sleep", "10"])
    service.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert (logging.DEBUG, "run ('true',)") in messages
    assert (logging.DEBUG, "stream ('true',)") in messages
    exits = [m for level, m in messages if level == logging.DEBUG and m.startswith("exit 0 in")]
    assert len(exits) == 2
    assert all(re.fullmatch(r"exit 0 in \d+\.\d{3} s: \('true',\)", m) for m in exits)
    assert any(
        level == logging.WARNING and re.fullmatch(r"timeout after \d+\.\d s, killed: \('sleep', '10'\)", m)
        for level, m in messages
    )
    assert (logging.INFO, f"started service sleep (pid {service.pid})") in messages


def test_process_wide_runner() -> None:
    assert local_runner() is local_runner()
    assert os.environ.get("BULWARK_DATA_DIR")  # (the autouse fixture gives every test its own)
