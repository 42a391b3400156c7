"""Delivering one message over one channel: SMTP (STARTTLS or TLS, with authentication), a signed webhook, or
syslog (RFC 5424 over UDP, or TCP with octet counting). Each returns what the other side answered, or raises
:class:`DeliveryFailed` with a reason that never contains the channel's secret.

Webhook signature: ``X-Bulwark-Timestamp`` is the Unix time of the attempt and ``X-Bulwark-Signature`` is
``sha256=`` followed by the hex HMAC-SHA256, keyed with the channel's secret, of ``<timestamp>.<body>``.
A receiver recomputes it over the raw body, compares in constant time and refuses old timestamps
(:func:`verify_signature` does exactly that). ``X-Bulwark-Delivery`` is the same on every retry of one
notification, so that a receiver can drop duplicates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import appliance
from appliance.alerts.channels import FACILITIES, Channel
from appliance.system.errors import BulwarkError

SMTP_TIMEOUT = 20.0
WEBHOOK_TIMEOUT = 10.0
SYSLOG_TIMEOUT = 5.0
SIGNATURE_TOLERANCE = 300
SEVERITY = {"critical": 2, "warning": 4, "info": 6}


class DeliveryFailed(BulwarkError):
    """Channel {} could not deliver: {}"""

    code = "delivery_failed"
    http_status = 502
    retryable = True
    hint = "Check the channel's settings and that its server is reachable; the appliance retries with backoff."


def _tls_context(config: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=config.get("ca_pem") or None)
    if not config.get("verify_tls", True):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"SMTP {exc.smtp_code} {text}".strip()
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"the server does not support it: {exc}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient was refused: " + ", ".join(sorted(exc.recipients))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message})"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


# -- e-mail --------------------------------------------------------------------------------------------------


def build_email(channel: Channel, payload: dict[str, Any], delivery_id: str) -> EmailMessage:
    config = channel.config
    msg = EmailMessage()
    msg["Subject"] = payload["subject"]
    msg["From"] = config["from"]
    msg["To"] = ", ".join(config["to"])
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=delivery_id.replace(":", "."), domain="bulwark.invalid")
    msg["X-Bulwark-Delivery"] = delivery_id
    msg.set_content(payload["text"])
    if payload.get("html"):
        msg.add_alternative(payload["html"], subtype="html")
    return msg


def send_email(channel: Channel, payload: dict[str, Any], delivery_id: str) -> str:
    config = channel.config
    msg = build_email(channel, payload, delivery_id)
    try:
        if config["security"] == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                config["host"], config["port"], timeout=SMTP_TIMEOUT, context=_tls_context(config)
            )
        else:
            client = smtplib.SMTP(config["host"], config["port"], timeout=SMTP_TIMEOUT)
        with client:
            client.ehlo()
            if config["security"] == "starttls":
                client.starttls(context=_tls_context(config))
                client.ehlo()
            if config.get("username"):
                client.login(config["username"], channel.secret or "")
            refused = client.send_message(msg)
        accepted = len(config["to"]) - len(refused)
        return f"accepted for {accepted} of {len(config['to'])} recipient(s)"
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryFailed(channel.name, _reason(exc)) from None


# -- webhooks ------------------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str, timestamp: str, body: bytes, presented: str, *, now: float | None = None, tolerance: int = 300
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    if not timestamp.isdigit() or abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), presented)


def send_webhook(channel: Channel, payload: dict[str, Any], delivery_id: str, *, now: float | None = None) -> str:
    body = json.dumps(payload.get("document") or {}, sort_keys=True).encode()
    timestamp = str(int(time.time() if now is None else now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Bulwark/{appliance.__version__}",
        "X-Bulwark-Event": str((payload.get("document") or {}).get("event", "")),
        "X-Bulwark-Delivery": delivery_id,
        "X-Bulwark-Timestamp": timestamp,
    }
    if channel.secret:
        headers["X-Bulwark-Signature"] = signature(channel.secret, timestamp, body)
    request = urllib.request.Request(channel.config["url"], data=body, headers=headers, method="POST")  # noqa: S310
    context = _tls_context(channel.config) if channel.config["url"].startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT, context=context) as response:  # noqa: S310
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(channel.name, f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        raise DeliveryFailed(channel.name, _reason(reason)) from None
    except (OSError, ValueError) as exc:
        raise DeliveryFailed(channel.name, _reason(exc)) from None


# -- syslog --------------------------------------------------------------------------------------------------


def syslog_line(channel: Channel, payload: dict[str, Any], hostname: str, delivery_id: str, now: float) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOST bulwark - ALERT [bulwark@32473 …] MSG``."""
    priority = FACILITIES[channel.config["facility"]] * 8 + SEVERITY.get(str(payload.get("level")), 6)
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    doc = payload.get("document") or {}
    alert = doc.get("alert") or {}

    def param(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")

    data = f'[bulwark@32473 event="{param(doc.get("event", ""))}" delivery="{param(delivery_id)}"'
    if alert:
        data += f' alert="{param(alert.get("id"))}" key="{param(alert.get("key"))}"'
    data += "]"
    message = " ".join(payload["subject"].split())
    return f"<{priority}>1 {stamp} {hostname or '-'} bulwark - ALERT {data} {message}".encode()


def send_syslog(
    channel: Channel, payload: dict[str, Any], delivery_id: str, *, hostname: str, now: float | None = None
) -> str:
    config = channel.config
    line = syslog_line(channel, payload, hostname, delivery_id, time.time() if now is None else now)
    host = config["host"].strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, config["port"], type=socket.SOCK_DGRAM if config["transport"] == "udp" else socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(SYSLOG_TIMEOUT)
            sock.connect(address)
            if config["transport"] == "udp":
                sock.send(line)
            else:  # RFC 6587 octet counting
                sock.sendall(str(len(line)).encode() + b" " + line)
    except OSError as exc:
        raise DeliveryFailed(channel.name, _reason(exc)) from None
    return f"{len(line)} bytes sent over {config['transport']}"


def send(channel: Channel, payload: dict[str, Any], delivery_id: str, *, hostname: str) -> str:
    if channel.kind == "email":
        return send_email(channel, payload, delivery_id)
    if channel.kind == "webhook":
        return send_webhook(channel, payload, delivery_id)
    return send_syslog(channel, payload, delivery_id, hostname=hostname)
