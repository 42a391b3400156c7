"""Client shares on a real smbd (loopback port) with smbprotocol as the client."""

from __future__ import annotations

import pytest
import smbclient
from smbprotocol.exceptions import LogonFailure, SMBAuthenticationError, SMBOSError, SMBResponseException

from appliance.samba import shares
from appliance.system.errors import InvalidInput
from appliance.system.runner import local_runner
from tests.smb_fixtures import SmbEnv, smb_env  # noqa: F401

pytestmark = pytest.mark.zfs

PW_A = "correct-horse-battery-a"
PW_B = "correct-horse-battery-b"


def unc(name: str, *rest: str) -> str:
    return "\\".join([rf"\\127.0.0.1\{name}", *rest])


@pytest.fixture(autouse=True)
def _fresh_smb_client() -> object:
    yield
    smbclient.reset_connection_cache()


def session(env: SmbEnv, client: str, password: str) -> None:
    smbclient.register_session("127.0.0.1", username=env.account(client), password=password, port=env.port)


def test_write_read_and_isolation(smb_env: SmbEnv) -> None:  # noqa: F811
    smb_env.add("acme", PW_A)
    smb_env.add("beta", PW_B)
    session(smb_env, "acme", PW_A)
    with smbclient.open_file(unc("acme", "backup.bin"), mode="wb", port=smb_env.port) as fh:
        fh.write(b"acme data " * 1000)
    assert (smb_env.live("acme") / "backup.bin").read_bytes() == b"acme data " * 1000
    with pytest.raises((SMBOSError, SMBResponseException)):
        smbclient.listdir(unc("beta"), port=smb_env.port)  # A's account on B's share
    smbclient.reset_connection_cache()
    with pytest.raises((SMBAuthenticationError, LogonFailure)):
        smbclient.register_session("127.0.0.1", username=smb_env.account("acme"), password="wrong-password-x",
                                   port=smb_env.port)  # fmt: skip


def test_hostile_comment_changes_nothing(smb_env: SmbEnv) -> None:  # noqa: F811
    smb_env.add("acme", PW_A)
    conf = shares.layout(smb_env.store).conf
    before = conf.read_bytes()
    for hostile in ("x\n[global]\nguest ok = yes", "100% %U", "a[b]", "a\rb"):
        with pytest.raises(InvalidInput):
            shares.set_share_options(smb_env.store, smb_env.env.zfs, local_runner(), "acme", by="test", comment=hostile)
    assert conf.read_bytes() == before
    assert shares.share_options(smb_env.store, "acme").comment == ""
