"""The agent's pinned TLS connection (agent/transport.py) against a real TLS server on loopback: the pin is
checked on every connection, including the one http.client opens by itself after the server closed the last."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from pathlib import Path

import pytest

from agent.transport import AgentError, Connection
from appliance.system import tls

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def _context(tmp: Path, name: str) -> tuple[ssl.SSLContext, str]:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    tls.create_self_signed(cert, key, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return ctx, hashlib.sha256(der).hexdigest()


def test_a_reconnection_to_another_certificate_sends_nothing(tmp_path: Path) -> None:
    """First connection: the pinned certificate, answered with 'Connection: close'. Second connection (made by
    http.client on its own): another certificate. The request with the credential must never reach it."""
    pinned, fingerprint = _context(tmp_path, "appliance")
    other, _ = _context(tmp_path, "intruder")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        for ctx in (pinned, other):
            raw, _ = listener.accept()
            with ctx.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                        data += chunk
                except (OSError, ssl.SSLError):
                    pass
                received.append(data)
                if data:
                    conn.sendall(ANSWER)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    conn = Connection(f"https://127.0.0.1:{port}", fingerprint, "ag-1:secret")
    try:
        assert conn.request("GET", "/hello") == {}
        with pytest.raises(AgentError) as exc:
            conn.request("GET", "/hello")
        assert exc.value.code == "fingerprint_mismatch"
    finally:
        conn.close()
        server.join(timeout=10)
        listener.close()
    assert b"BulwarkAgent ag-1:secret" in received[0]
    assert received[1] == b""  # the intruder saw the handshake only, never the credential
