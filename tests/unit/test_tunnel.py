"""The tunnel's pure parts: what ssh's messages mean (lines recorded from OpenSSH 9.2p1 on Debian 12 against the
test jump host), ss's traffic figures, key and fingerprint parsing, validation of what reaches ssh's command line,
the command line itself, and the backoff."""

from __future__ import annotations

import pytest

from appliance.system.errors import InvalidInput, UnexpectedOutput
from appliance.tunnel import config, keys, ssh, status
from appliance.tunnel.config import TunnelConfig
from appliance.tunnel.supervisor import Backoff

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbf/efhd8ZRVF78pisOHrJhJcDC+Y3cZLVwjc8v1IDH"
FINGERPRINT = "SHA256:6INasrNpjwHV62P4iK7QeCKDpzx2CpG2axL6jOPQwKs"  # ssh-keygen -lf of KEY

RECORDED = [
    ("debug1: Server host key: ssh-ed25519 SHA256:6INasrNpjwHV62P4iK7QeCKDpzx2CpG2axL6jOPQwKs", "host_key"),
    ('Authenticated to 127.0.0.1 ([127.0.0.1]:22222) using "publickey".', "authenticated"),
    ("debug1: forwarding_success: all expected forwarding replies received", "forwarding"),
    ("Transferred: sent 4284, received 3300 bytes, in 3.8 seconds", "transferred"),
    ("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", "host_key_changed"),
    ("SHA256:6INasrNpjwHV62P4iK7QeCKDpzx2CpG2axL6jOPQwKs.", "host_key"),
    ("Host key verification failed.", "host_key_unknown"),
    ("bwtx@127.0.0.1: Permission denied (publickey).", "auth_refused"),
    ("Error: remote port forwarding failed for listen port 18081", "forward_refused"),
    ("ssh: connect to host 127.0.0.1 port 22222: Connection refused", "refused"),
    ("ssh: Could not resolve hostname jump.invalid: Name or service not known", "unreachable"),
    ("Timeout, server 127.0.0.1 not responding.", "timeout"),
    ("Connection to 127.0.0.1 closed by remote host.", "closed"),
    ("debug1: channel 0: free: 127.0.0.1, nchannels 1", None),
    ("Bytes per second: sent 1137.8, received 876.5", None),
]


@pytest.mark.parametrize(("line", "kind"), RECORDED)
def test_ssh_messages(line: str, kind: str | None) -> None:
    event = ssh.classify(line)
    assert (event.kind if event else None) == kind


def test_transferred_and_host_key_details() -> None:
    moved = ssh.classify("Transferred: sent 4284, received 3300 bytes, in 3.8 seconds")
    assert moved is not None and (moved.sent, moved.received) == (4284, 3300)
    shown = ssh.classify("debug1: Server host key: ssh-ed25519 SHA256:6INasrNpjwHV62P4iK7QeCKDpzx2CpG2axL6jOPQwKs")
    assert shown is not None and shown.detail == "SHA256:6INasrNpjwHV62P4iK7QeCKDpzx2CpG2axL6jOPQwKs"
    for kind, (message, hint) in ssh.PROBLEMS.items():
        assert message and hint, kind


SS = (
    '0      36     127.0.0.1:51482 127.0.0.1:22222 users:(("ssh",pid=7595,fd=3))\n'
    "\t bbr wscale:10,10 rto:208 rtt:5.14/5.543 ato:40 mss:42496 cwnd:18 bytes_sent:4593 bytes_acked:4558 "
    "bytes_received:3549 segs_out:22 segs_in:17 bbr:(bw:33996787840bps,mrtt:0.01) send 1190549416bps\n"
    '0      0      127.0.0.1:8444 127.0.0.1:40000 users:(("gunicorn",pid=1234,fd=9))\n'
    "\t cubic bytes_sent:1 bytes_received:2\n"
)


def test_ss_figures() -> None:
    assert ssh.parse_ss(SS, 7595) == (4593, 3549)
    assert ssh.parse_ss(SS, 75) is None  # pid=75 is not pid=7595
    with pytest.raises(UnexpectedOutput):
        ssh.parse_ss('0 0 a b users:(("ssh",pid=9,fd=3))\n', 9)


def test_keys_and_fingerprints() -> None:
    key = keys.parse_public_key(KEY + " jump")
    assert key.fingerprint == FINGERPRINT and key.comment == "jump"
    assert keys.parse_public_key(f"[127.0.0.1]:22222 {KEY}") == keys.parse_public_key(KEY)
    assert keys.check_fingerprint(f"  {key.fingerprint} ") == key.fingerprint
    for bad in ("", "ssh-ed25519", "ssh-dss AAAA", KEY[:-4], KEY.replace("ed25519 ", "rsa "), KEY + "\nssh-rsa x"):
        with pytest.raises(InvalidInput):
            keys.parse_public_key(bad)
    with pytest.raises(InvalidInput):
        keys.check_fingerprint("MD5:aa:bb")
    line = keys.authorized_keys_line(keys.PublicKey("ssh-ed25519", key.blob, "bulwark@site-a"), 20001)
    assert line == (
        'restrict,port-forwarding,permitlisten="127.0.0.1:20001",permitopen="127.0.0.1:1",command="/bin/false" '
        f"ssh-ed25519 {key.blob} bulwark@site-a"
    )


def test_keyscan_output_is_parsed_strictly() -> None:
    out = f"# 127.0.0.1:22 SSH-2.0-OpenSSH_9.2p1\n[127.0.0.1]:22 {KEY}\n"
    assert keys.parse_keyscan(out) == [keys.parse_public_key(KEY)]
    with pytest.raises(UnexpectedOutput):
        keys.parse_keyscan("garbage line here and more\n")


@pytest.mark.parametrize("host", ["jump.msp.example", "10.0.0.1", "::1", "JUMP-1.example."])
def test_good_hosts(host: str) -> None:
    assert config.check_host(host)


@pytest.mark.parametrize(
    "host", ["-oProxyCommand=x", "jump example", "jump\nexample", "", "a" * 254, "1.2.3.4.5", "jump_1.example"]
)
def test_bad_hosts(host: str) -> None:
    with pytest.raises(InvalidInput):
        config.check_host(host)


@pytest.mark.parametrize("user", ["-lroot", "Root", "a b", "", "x" * 33, "site\n"])
def test_bad_users(user: str) -> None:
    with pytest.raises(InvalidInput):
        config.check_user(user)


def test_ports_and_delays() -> None:
    assert config.check_remote_port(20001) == 20001
    for bad in (80, 70000, True):
        with pytest.raises(InvalidInput):
            config.check_remote_port(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        config.check_alert_after(0)


def test_command_line() -> None:
    cfg = TunnelConfig(host="jump.example", user="site-a", remote_port=20001, port=2222, host_key=KEY)
    from pathlib import Path

    argv = ssh.ssh_argv(cfg, key=Path("/k"), known_hosts=Path("/kh"), local_port=8444)
    assert argv[:3] == ["ssh", "-F", "/dev/null"] and argv[-2:] == ["--", "jump.example"]
    assert argv[argv.index("-R") + 1] == "127.0.0.1:20001:127.0.0.1:8444"
    options = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    for wanted in (
        "ExitOnForwardFailure=yes",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "ServerAliveInterval=15",
        "UserKnownHostsFile=/kh",
        "HostKeyAlgorithms=ssh-ed25519",
        "UpdateHostKeys=no",
    ):
        assert wanted in options
    assert "-N" in argv and "-i" in argv and argv[argv.index("-l") + 1] == "site-a"
    with pytest.raises(ValueError, match="pinned"):
        ssh.ssh_argv(TunnelConfig(host="j", user="u", remote_port=20001), key=Path("/k"), known_hosts=Path("/kh"),
                     local_port=1)  # fmt: skip


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    b = Backoff(base=1.0, cap=300.0)
    lows = [b.delay(n, rng=lambda: 0.0) for n in range(1, 12)]
    highs = [b.delay(n, rng=lambda: 1.0) for n in range(1, 12)]
    assert lows[:4] == [0.5, 1.0, 2.0, 4.0] and highs[:4] == [1.0, 2.0, 4.0, 8.0]
    assert highs[-1] == 300.0 and lows[-1] == 150.0


def test_listener_from_the_kernel_table(tmp_path: pytest.TempPathFactory) -> None:
    table = tmp_path / "tcp"  # type: ignore[operator]
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:20FC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
        "   1: 0100007F:20FD 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
    )
    assert status.listening(8444, str(table)) is True
    assert status.listening(8445, str(table)) is False  # established, not listening
    assert status.listening(None, str(table)) is False
