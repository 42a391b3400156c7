"""HTTPS to the appliance with its certificate pinned by SHA-256 (from the enrollment code): no CA, no trust
on first use. TLS 1.2 or newer only."""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

PROTOCOL = 1
RATE_LIMIT_RETRIES = 20


def _retry_after(value: str | None) -> float:
    try:
        return max(0.1, float(value or "1"))
    except ValueError:
        return 1.0


class AgentError(Exception):
    """An error to show the user: the appliance's message and what to do next."""

    def __init__(self, message: str, hint: str = "", code: str = "error", status: int = 0, body: Any = None):
        super().__init__(message)
        self.message, self.hint, self.code, self.status, self.body = message, hint, code, status, body

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that checks the pinned fingerprint every time it connects — also when http.client
    reconnects on its own after the appliance closed a kept-alive connection — before any request is sent."""

    def __init__(self, host: str, port: int, fingerprint: str, context: ssl.SSLContext) -> None:
        super().__init__(host, port, context=context, timeout=300)
        self.fingerprint = fingerprint

    def connect(self) -> None:
        super().connect()
        der = self.sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != self.fingerprint:
            self.close()
            raise AgentError(
                "the appliance's TLS certificate does not match the pinned fingerprint",
                "someone may be intercepting the connection; if the certificate was replaced, enroll again "
                "with a new code",
                code="fingerprint_mismatch",
            )


class Connection:
    def __init__(self, server: str, fingerprint: str, credential: str | None = None, bwlimit: int = 0) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise AgentError(f"the server must be https://HOST:PORT, not {server!r}")
        self.host, self.port = url.hostname, url.port or 443
        self.fingerprint = fingerprint.replace(":", "").lower()
        self.credential = credential
        self.bwlimit = bwlimit  # bytes per second, 0 for none
        self._conn: http.client.HTTPSConnection | None = None
        self._sent_at = time.monotonic()
        self._sent = 0

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the pinned fingerprint below is the trust, not a CA
        return ctx

    def _connect(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            conn = PinnedHTTPSConnection(self.host, self.port, self.fingerprint, self._context())
            try:
                conn.connect()
            except OSError as exc:
                raise AgentError(
                    f"cannot reach the appliance at {self.host}:{self.port} ({exc})",
                    "check the address, the port and that the appliance is running",
                ) from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _throttle(self, count: int) -> None:
        if not self.bwlimit:
            return
        self._sent += count
        ahead = self._sent / self.bwlimit - (time.monotonic() - self._sent_at)
        if ahead > 0:
            time.sleep(ahead)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        _waited: int = 0,
    ) -> Any:
        hdrs = {"Bulwark-Protocol": str(PROTOCOL), **(headers or {})}
        if self.credential:
            hdrs["Authorization"] = f"BulwarkAgent {self.credential}"
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once
            conn = self._connect()
            try:
                conn.request(method, f"/agent/v1{path}", body=data, headers=hdrs)
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
                self.close()
                if attempt == 2:
                    raise AgentError("the appliance closed the connection", "run the command again") from None
        self._throttle(len(data or b""))
        if stream and resp.status == 200:
            return resp
        payload = resp.read()
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            decoded = {}
        if resp.status >= 400:
            err = decoded.get("error", {}) if isinstance(decoded, dict) else {}
            if resp.status == 429 and err.get("code") == "rate_limited" and _waited < RATE_LIMIT_RETRIES:
                # Too many requests of this agent at once: nothing was done, so the same request goes again.
                time.sleep(min(_retry_after(resp.getheader("Retry-After")), 30.0))
                return self.request(method, path, body, raw=raw, headers=headers, stream=stream, _waited=_waited + 1)
            raise AgentError(
                err.get("message", f"the appliance answered {resp.status}"),
                err.get("hint", ""),
                code=err.get("code", "error"),
                status=resp.status,
                body=decoded,
            )
        return decoded

    def chunks(self, resp: http.client.HTTPResponse, size: int = 1024 * 1024) -> Iterator[bytes]:
        while block := resp.read(size):
            yield block
