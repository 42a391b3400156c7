"""``ssh`` for the tunnel: the command line (pure), what its messages mean (pure), and its traffic from ``ss``.

The tunnel is ``ssh -N -R 127.0.0.1:R:127.0.0.1:L`` with no configuration file, only the appliance's key, only
Bulwark's known_hosts (``StrictHostKeyChecking=yes``: a changed key refuses), ``ExitOnForwardFailure`` (a refused
forward ends it rather than leaving a useless connection), ``BatchMode`` (it never waits for a person) and
keep-alives (a dead network path is noticed within ``ServerAliveInterval × ServerAliveCountMax`` seconds).
``LogLevel=DEBUG1`` is what makes ``ssh`` say when the forward is actually established."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from appliance.system.errors import UnexpectedOutput
from appliance.tunnel.config import TunnelConfig
from appliance.tunnel.keys import HOST_ALIAS

ALIVE_INTERVAL = 15
ALIVE_COUNT = 3
CONNECT_TIMEOUT = 15

# The host key algorithms ssh may accept for a pinned key of each type (so it compares against that very key).
HOST_KEY_ALGORITHMS = {
    "ssh-ed25519": "ssh-ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521",
    "ssh-rsa": "rsa-sha2-512,rsa-sha2-256",
}


def ssh_argv(config: TunnelConfig, *, key: Path, known_hosts: Path, local_port: int) -> list[str]:
    """The tunnel's command line. Host and user are validated by :mod:`.config`; ``--`` guards them anyway."""
    if not config.host_key:
        raise ValueError("no pinned host key")
    key_type = config.host_key.split()[0]
    options = {
        "BatchMode": "yes",
        "ExitOnForwardFailure": "yes",
        "ServerAliveInterval": str(ALIVE_INTERVAL),
        "ServerAliveCountMax": str(ALIVE_COUNT),
        "TCPKeepAlive": "yes",
        "ConnectTimeout": str(CONNECT_TIMEOUT),
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "HostKeyAlias": HOST_ALIAS,
        "HostKeyAlgorithms": HOST_KEY_ALGORITHMS[key_type],
        "CheckHostIP": "no",
        "UpdateHostKeys": "no",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "ForwardAgent": "no",
        "ForwardX11": "no",
        "ControlMaster": "no",
        "ControlPath": "none",
        "PermitLocalCommand": "no",
        "RequestTTY": "no",
        "LogLevel": "DEBUG1",
    }
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(config.port), "-l", config.user]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += ["-N", "-T", "-R", f"127.0.0.1:{config.remote_port}:127.0.0.1:{local_port}", "--", config.host]
    return argv


# -- what ssh says --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One meaningful line of ``ssh``'s output. ``kind`` is one of the keys of :data:`PROBLEMS` or
    ``host_key`` (the key the server showed), ``authenticated``, ``forwarding`` (the tunnel is up),
    ``transferred``."""

    kind: str
    detail: str = ""
    sent: int = 0
    received: int = 0


# kind → (message, what to do next). The first matching pattern wins; most specific first.
PROBLEMS: dict[str, tuple[str, str]] = {
    "host_key_changed": (
        "the jump host's key has CHANGED: the tunnel is stopped",
        (
            "If the MSP really replaced the jump host's key, confirm the new fingerprint with them and pin it "
            "again ('bulwark tunnel scan' then 'bulwark tunnel trust'); otherwise someone may be intercepting "
            "the connection."
        ),
    ),
    "host_key_unknown": (
        "the jump host's key could not be verified against the pinned one",
        "Pin the jump host's key again ('bulwark tunnel scan' then 'bulwark tunnel trust').",
    ),
    "auth_refused": (
        "the jump host refused the appliance's key",
        "Add the line from 'bulwark tunnel pubkey' to the authorized_keys of the tunnel user on the jump host.",
    ),
    "forward_refused": (
        "the jump host refused the remote port forward",
        "The port is in use on the jump host, or the key line's permitlisten does not name it; check both.",
    ),
    "timeout": (
        "the jump host stopped answering (keep-alives unanswered)",
        "Check the site's internet connection and the jump host; the tunnel retries by itself.",
    ),
    "refused": (
        "the jump host refused the connection",
        "Check that sshd runs on the jump host at that port; the tunnel retries by itself.",
    ),
    "unreachable": (
        "the jump host cannot be reached",
        "Check the host name, the site's internet connection and its firewall's outbound rules.",
    ),
    "closed": (
        "the jump host closed the connection",
        "The tunnel retries by itself; if this repeats, read the jump host's sshd log.",
    ),
}

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("host_key_changed", re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed")),
    ("host_key_unknown", re.compile(r"^Host key verification failed\.|No \S+ host key is known for")),
    ("auth_refused", re.compile(r"Permission denied \(")),
    ("forward_refused", re.compile(r"remote port forwarding failed for listen port")),
    ("timeout", re.compile(r"Timeout, server .* not responding|Connection timed out")),
    ("refused", re.compile(r"connect to host .* Connection refused")),
    ("unreachable", re.compile(r"Could not resolve hostname|Network is unreachable|No route to host")),
    (
        "closed",
        re.compile(
            r"Connection closed by|closed by remote host|Connection reset by|client_loop: send disconnect|Broken pipe"
        ),
    ),
]
_SERVER_KEY = re.compile(r"^debug1: Server host key: (\S+) (SHA256:[A-Za-z0-9+/]{43})$")
_TRANSFERRED = re.compile(r"^Transferred: sent (\d+), received (\d+) bytes")
_PRESENTED = re.compile(r"^(SHA256:[A-Za-z0-9+/]{43})\.$")  # the fingerprint line of the changed-key warning


def classify(line: str) -> Event | None:
    """What one line of ``ssh``'s stderr means, or None for the chatter."""
    text = line.rstrip("\r\n")
    if match := _SERVER_KEY.match(text):
        return Event("host_key", match.group(2))
    if match := _PRESENTED.match(text):
        return Event("host_key", match.group(1))
    if text.startswith("Authenticated to "):
        return Event("authenticated", text)
    if text.startswith("debug1: forwarding_success: all expected forwarding replies received"):
        return Event("forwarding", text)
    if match := _TRANSFERRED.match(text):
        return Event("transferred", text, sent=int(match.group(1)), received=int(match.group(2)))
    if text.startswith("debug"):
        return None
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return Event(kind, text)
    return None


# -- traffic ------------------------------------------------------------------------------------------------


def parse_ss(text: str, pid: int) -> tuple[int, int] | None:
    """Bytes sent and received by the TCP connections of process ``pid``, from ``ss -H -t -i -n -p``: each
    socket is a line naming its process, then an indented line of ``key:value`` figures."""
    lines = text.splitlines()
    marker = f"pid={pid},"
    sent = received = 0
    found = False
    for i, line in enumerate(lines):
        if line.startswith(("\t", " ")) or marker not in line:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith(("\t", " ")):
            raise UnexpectedOutput("ss", line)
        figures = dict(tok.split(":", 1) for tok in lines[i + 1].split() if ":" in tok and "(" not in tok)
        try:
            sent += int(figures.get("bytes_sent", figures.get("bytes_acked", "0")))
            received += int(figures.get("bytes_received", "0"))
        except ValueError:
            raise UnexpectedOutput("ss", lines[i + 1]) from None
        found = True
    return (sent, received) if found else None
