"""Real servers on loopback for the alert channels: an SMTP server (aiosmtpd) with STARTTLS or implicit TLS and
authentication, an HTTP server that checks webhook signatures, and syslog receivers (UDP and TCP).

Each is started by a test (fixtures in the test modules) and stopped at its end; nothing outlives the test.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from appliance.system import tls

SMTP_USER, SMTP_PASSWORD = "bulwark", "smtp-password-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


@dataclass
class Mail:
    message: EmailMessage
    rcpt: list[str]
    mail_from: str
    received_at: float  # time.time() when the server took it


@dataclass
class MailServer:
    port: int
    cert_pem: str
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (user, accepted)
    tls_seen: list[bool] = field(default_factory=list)

    def subjects(self) -> list[str]:
        return [str(m.message["Subject"]) for m in self.mails]


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.server.tls_seen.append(session.ssl is not None)
        self.server.mails.append(Mail(message, list(envelope.rcpt_tos), str(envelope.mail_from), time.time()))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(directory: Path, *, implicit_tls: bool = False) -> Iterator[MailServer]:
    """aiosmtpd on 127.0.0.1 with a certificate made here: STARTTLS required (or implicit TLS), AUTH required."""
    cert, key = directory / "smtp.crt", directory / "smtp.key"
    tls.create_self_signed(cert, key, "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = MailServer(free_port(), cert.read_text())

    def authenticate(smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        server.logins.append((data.login.decode() if isinstance(data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    options: dict[str, Any] = {"authenticator": authenticate, "auth_required": True}
    if implicit_tls:
        # (aiosmtpd only counts STARTTLS as TLS for AUTH; this connection is TLS from its first byte)
        controller = Controller(_Handler(server), hostname="127.0.0.1", port=server.port, ssl_context=context,
                                auth_require_tls=False, **options)  # fmt: skip
    else:
        controller = Controller(_Handler(server), hostname="127.0.0.1", port=server.port, tls_context=context,
                                require_starttls=True, **options)  # fmt: skip
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Hook:
    headers: dict[str, str]
    body: bytes
    valid_signature: bool
    received_at: float


@dataclass
class WebhookServer:
    port: int
    secret: str
    hooks: list[Hook] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 500 first

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bulwark"


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's side, written from the documentation (not with Bulwark's code)."""
    timestamp = headers.get("X-Bulwark-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers.get("X-Bulwark-Signature", ""))


@contextmanager
def webhook_server(secret: str) -> Iterator[WebhookServer]:
    state = WebhookServer(0, secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            state.hooks.append(Hook(headers, body, _verify(state.secret, headers, body), time.time()))
            status = 500 if state.fail_next > 0 else 204
            state.fail_next = max(0, state.fail_next - 1)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@contextmanager
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def tcp_receiver() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP syslog receiver: collects what each connection sends."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                received.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1]), received
    finally:
        stop.set()
        thread.join(5)
        server.close()


def closed_port() -> int:
    """A loopback port where nothing listens (connections are refused)."""
    return free_port()
