"""The ``bulwark`` command's parsing, data-dir choice and error path, and the error classes' contract."""

from __future__ import annotations

import importlib
import logging
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import cli
from appliance.system import errors
from appliance.system.errors import BulwarkError, InvalidInput
from appliance.system.paths import DEFAULT_DATA_DIR, ENV_DATA_DIR, Paths, resolve_data_dir

# Modules that define error classes; importing them registers every subclass of BulwarkError.
ERROR_MODULES = [
    "appliance.system.errors",
    "appliance.zfs.errors",
    "appliance.store.db",
    "appliance.jobs.queue",
    "appliance.jobs.base",
    "appliance.jobs.worker",
    "appliance.cli",
    "appliance.server",
]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``cli.main`` configures the root logger (it is the program's entry point); undo that."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def missing(tmp_path: Path) -> Path:
    """A data directory that was never initialized."""
    return tmp_path / "not-initialized"


NEEDS_INIT = [
    ["status"],
    ["status", "--json"],
    ["run"],
    ["run", "--port", "9443"],
    ["daemon"],
    ["pool", "scrub"],
    ["pool", "scrub", "--wait", "--json"],
    ["job", "list"],
    ["job", "show", "1"],
    ["job", "cancel", "1"],
    ["user", "list"],
    ["user", "reset-password", "admin"],
]


@pytest.mark.parametrize("argv", NEEDS_INIT, ids=" ".join)
def test_not_initialized(argv: list[str], missing: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--data-dir", str(missing), *argv]) == 13
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"bulwark: error: The appliance is not set up in {missing}.")
    assert "Run 'bulwark init' first" in err
    assert not missing.exists()  # a mistyped --data-dir is not created


def test_data_dir_option_beats_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_env, from_option = tmp_path / "env", tmp_path / "option"
    monkeypatch.setenv(ENV_DATA_DIR, str(from_env))
    assert cli.main(["status"]) == 13
    assert f"not set up in {from_env}." in capsys.readouterr().err
    assert cli.main(["--data-dir", str(from_option), "status"]) == 13
    assert f"not set up in {from_option}." in capsys.readouterr().err


def test_resolve_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert resolve_data_dir() == DEFAULT_DATA_DIR == Path("/var/lib/bulwark")
    monkeypatch.setenv(ENV_DATA_DIR, "")
    assert resolve_data_dir() == DEFAULT_DATA_DIR  # empty is unset
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "option") == tmp_path / "option"
    assert resolve_data_dir(str(tmp_path / "option")) == tmp_path / "option"
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("relative/dir") == tmp_path / "relative" / "dir"
    monkeypatch.setenv(ENV_DATA_DIR, "from-env")
    assert resolve_data_dir() == tmp_path / "from-env"
    assert Paths.resolve("x").db == tmp_path / "x" / "bulwark.db"


@pytest.mark.parametrize("bad", ["/tmp/a\nb", "/tmp/a\rb", "/tmp/a\tb"])
def test_data_dir_with_control_characters(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidInput):
        resolve_data_dir(bad)
    assert cli.main(["--data-dir", bad, "status"]) == InvalidInput.exit_status == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bulwark: error: Invalid input: the data directory path")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["init", "--port", "70000"], "argument --port: port 70000 must be a number from 1 to 65535"),
        (["init", "--port", "0"], "argument --port: port 0 must be a number from 1 to 65535"),
        (["init", "--port", "-1"], "argument --port: port -1 must be"),
        (["init", "--port", "https"], "argument --port: 'https' is not a port number"),
        (["run", "--port", "65536"], "argument --port: port 65536 must be"),
        (["run", "--port", ""], "argument --port: '' is not a port number"),
        (["init", "--layout", "raid5"], "argument --layout: invalid choice: 'raid5'"),
        (["job", "show", "one"], "argument id: invalid int value: 'one'"),
        (["job", "show"], "the following arguments are required: id"),
        (["job"], "the following arguments are required: SUBCOMMAND"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["status", "--jsn"], "unrecognized arguments: --jsn"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_usage_errors_exit_2(argv: list[str], message: str, missing: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--data-dir", str(missing), *argv])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err
    assert "Traceback" not in err
    assert not missing.exists()


def test_valid_ports_parse() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["init"]).port == 8443
    assert parser.parse_args(["init", "--port", "1"]).port == 1
    assert parser.parse_args(["init", "--port", "65535"]).port == 65535
    assert parser.parse_args(["run"]).port is None  # the one set at init
    args = parser.parse_args(["init", "--devices", "/dev/sdb,/dev/sdc", "--devices", "/dev/sdd"])
    assert args.devices == ["/dev/sdb,/dev/sdc", "/dev/sdd"]


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    import appliance

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bulwark {appliance.__version__}"
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "usage: bulwark" in capsys.readouterr().out


# --- the error classes ---------------------------------------------------------------------------


def _error_classes() -> list[type[BulwarkError]]:
    for name in ERROR_MODULES:
        importlib.import_module(name)
    # Only the product's own classes (tests may define throwaway subclasses).
    return [cls for cls in errors.all_error_classes() if cls.__module__.startswith("appliance.")]


def _sample_args(template: str) -> list[str]:
    """Positional arguments enough for ``template``; a named field is a mistake."""
    auto, highest = 0, -1
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        name = field.split(".")[0].split("[")[0]
        if name == "":
            auto += 1
        else:
            assert name.isdigit(), f"named placeholder {{{field}}} in {template!r}"
            highest = max(highest, int(name))
    return [f"<arg{i}>" for i in range(max(auto, highest + 1))]


ERROR_CLASSES = _error_classes()


def test_error_classes_are_found() -> None:
    names = {cls.__name__ for cls in ERROR_CLASSES}
    expected = {"BulwarkError", "NotInitialized", "DatabaseTooNew", "JobCancelled", "InternalError", "WebFailed"}
    assert expected <= names
    assert "JobFailedError" in names and "PoolNotFound" in names


def test_error_codes_are_unique() -> None:
    codes = Counter(cls.code for cls in ERROR_CLASSES)
    duplicates = {
        code: [cls.__qualname__ for cls in ERROR_CLASSES if cls.code == code] for code, n in codes.items() if n > 1
    }
    assert duplicates == {}


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_error_class_contract(cls: type[BulwarkError]) -> None:
    doc = cls.__dict__.get("__doc__")
    assert isinstance(doc, str) and doc.strip(), "the class needs its own docstring (its message template)"
    template = doc.strip().splitlines()[0]
    args = _sample_args(template)
    message = template.format(*args)
    assert "{" not in message and "}" not in message
    assert all(a in message for a in args)

    assert isinstance(cls.code, str) and cls.code.replace("_", "").isalnum() and cls.code == cls.code.lower()
    assert isinstance(cls.exit_status, int) and 1 <= cls.exit_status <= 127
    assert cls.exit_status not in (2, 130)  # argparse's usage error and the interrupt status
    assert isinstance(cls.http_status, int) and 400 <= cls.http_status <= 599
    assert isinstance(cls.retryable, bool)
    assert isinstance(cls.hint, str) and cls.hint.strip() and "\n" not in cls.hint


@pytest.mark.parametrize(
    "cls", [c for c in ERROR_CLASSES if c.__init__ is BulwarkError.__init__], ids=lambda c: c.__qualname__
)
def test_error_message_and_dict(cls: type[BulwarkError]) -> None:
    template = cls.__dict__["__doc__"].strip().splitlines()[0]
    args = _sample_args(template)
    exc = cls(*args)
    assert exc.message == template.format(*args) == str(exc)
    assert exc.to_dict() == {"code": cls.code, "message": exc.message, "hint": cls.hint, "retryable": cls.retryable}
