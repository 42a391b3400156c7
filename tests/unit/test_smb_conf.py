"""smb.conf from data: the pure builder, the template, the checks on everything that reaches the file, testparm's
verdict (real testparm), account names, and smbstatus --json parsing (a recording of Samba 4.17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.samba import accounts, activity, conf, server
from appliance.samba.conf import Layout, ShareSpec
from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.system.runner import local_runner

ROOT = "/pool/clients"
DATA = Path(__file__).resolve().parent.parent / "data"


def spec(**over: object) -> ShareSpec:
    base: dict[str, object] = {"name": "acme", "path": f"{ROOT}/acme/share", "account": "bw-acme"}
    return ShareSpec(**{**base, **over})  # type: ignore[arg-type]


def text(tmp_path: Path, *specs: ShareSpec, **layout: object) -> str:
    return conf.render(conf.build(Layout(tmp_path, **layout), list(specs), ROOT))  # type: ignore[arg-type]


def test_build_is_pure_and_sorted(tmp_path: Path) -> None:
    a, b = spec(name="beta", path=f"{ROOT}/beta/share", account="bw-beta"), spec()
    assert text(tmp_path, a, b) == text(tmp_path, b, a)
    out = text(tmp_path, a, b)
    assert out.index("[acme]") < out.index("[beta]")
    for line in ("server signing = mandatory", "map to guest = Never", "disable netbios = yes",
                 "server min protocol = SMB2_10", "valid users = bw-acme", "guest ok = no"):  # fmt: skip
        assert line in out
    assert f"private dir = {tmp_path}/private" in out


def test_encryption_and_previous_versions(tmp_path: Path) -> None:
    out = text(tmp_path, spec(encrypt=True, shadow=True, snapdir=f"{ROOT}/acme/versions"))
    assert "smb encrypt = required" in out
    assert "vfs objects = shadow_copy2" in out and f"shadow:snapdir = {ROOT}/acme/versions" in out
    assert "shadow:format = bw-%Y%m%dT%H%M%SZ" in out


@pytest.mark.parametrize(
    "over",
    [
        {"name": "acme\n[global]"},
        {"name": "ac[me"},
        {"name": "global"},
        {"name": "Acme"},
        {"name": "a%U"},
        {"comment": "nightly\nguest ok = yes"},
        {"comment": "100% %U"},
        {"comment": "a [b]"},
        {"comment": "x; y"},
        {"path": "/etc"},
        {"path": f"{ROOT}/../etc"},
        {"path": f"{ROOT}/acme/%U"},
        {"path": f"{ROOT}/acme\n[x]"},
        {"path": "/pool/clientsX/acme"},
        {"account": "root\n"},
        {"snapdir": "/tmp/elsewhere", "shadow": True},
        {"snapdir": "relative/dir", "shadow": True},
    ],
)
def test_hostile_values_are_refused(tmp_path: Path, over: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        text(tmp_path, spec(**over))


def test_global_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        text(tmp_path, spec(), port=0)
    with pytest.raises(InvalidInput):
        text(tmp_path, spec(), min_protocol="NT1")
    with pytest.raises(InvalidInput):
        text(tmp_path, spec(), interfaces=("eth0\n[x]",))
    with pytest.raises(InvalidInput, match="two shares"):
        text(tmp_path, spec(), spec())


def test_render_refuses_a_line_break_even_past_the_builder() -> None:
    with pytest.raises(InvalidInput):
        conf.render([conf.Section("x", (("comment", "a\nb"),))])


def test_testparm_accepts_ours_and_refuses_an_unknown_parameter(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "samba", port=4450)
    good = text(tmp_path / "samba", spec(shadow=True, snapdir=f"{ROOT}/acme/versions"), port=4450)
    server.testparm_text(local_runner(), layout, good)
    bad = good.replace("guest ok = no", "guest ok = no\n\tno such parameter = 1")
    with pytest.raises(server.SambaConfigRejected, match="no such parameter"):
        server.testparm_text(local_runner(), layout, bad)
    assert not layout.conf.exists()
    assert server.install(local_runner(), layout, good) is True
    assert server.install(local_runner(), layout, good) is False  # unchanged: nothing written, no reload
    with pytest.raises(server.SambaConfigRejected):
        server.install(local_runner(), layout, bad)
    assert layout.conf.read_text() == good
    assert [p.name for p in layout.state_dir.iterdir() if p.name.startswith(".smb.conf")] == []


def test_account_names() -> None:
    assert accounts.account_name("acme") == "bw-acme"
    long = accounts.account_name("a" * 32)
    assert len(long) <= 32 and long.startswith("bw-aaaa") and long != accounts.account_name("a" * 31)
    with pytest.raises(InvalidInput):
        accounts.check_password("short")
    with pytest.raises(InvalidInput):
        accounts.check_password("long enough but\nbroken")
    assert len(accounts.generate_password()) == 24


def test_smbstatus_json_open_for_writing() -> None:
    files = activity.parse_status((DATA / "smbstatus-json-4.17-open-for-write.json").read_text())
    assert [(f.name, f.writing) for f in files] == [("f.bin", True)]
    assert activity.open_on(files, files[0].share_path) == files
    assert activity.open_on(files, "/elsewhere") == []
    assert activity.parse_status('{"sessions": {}}') == []
    with pytest.raises(UnexpectedOutput):
        activity.parse_status("not json")
    with pytest.raises(UnexpectedOutput):
        activity.parse_status('{"open_files": {"x": {"opens": 3}}}')
