"""Request and response models of the remote-access (tunnel) API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from webui.api.schemas import Strict


class JumpHostOut(BaseModel):
    host: str
    port: int
    user: str
    remote_port: int
    alert_after: int = Field(description="seconds the tunnel may be down before an alert")
    host_key: str | None = Field(description="the pinned jump host key; the tunnel does not start without one")
    host_key_fingerprint: str | None
    pending_host_key: str | None = Field(description="a scanned key waiting for confirmation")
    pending_host_key_fingerprint: str | None


class RemoteSessionsOut(BaseModel):
    allowed: bool
    changed_by: str | None
    changed_at: float | None


class TunnelEvent(BaseModel):
    at: float
    event: str
    detail: str


class TunnelStatus(BaseModel):
    state: Literal["connected", "connecting", "down", "disabled"]
    configured: bool
    enabled: bool
    since: float | None
    connected_since: float | None
    down_since: float | None
    last_error: str | None
    last_error_hint: str | None
    last_error_at: float | None
    blocked: str | None = Field(description="host_key_changed: stopped until a key is pinned again")
    reconnects: int
    failures_in_a_row: int
    next_attempt_at: float | None
    bytes_sent: int
    bytes_received: int
    pid: int | None
    presented_host_key: str | None = Field(description="fingerprint of the key the jump host last showed")
    jump_host: JumpHostOut | None
    local_port: int | None
    local_listener: bool | None
    public_key: str | None
    public_key_fingerprint: str | None
    authorized_keys_line: str | None = Field(description="the restricted line for the jump host's authorized_keys")
    remote_sessions: RemoteSessionsOut
    events: list[TunnelEvent]


class TunnelConfigure(Strict):
    host: str = Field(min_length=1, max_length=253, description="the MSP's jump host, a name or an address")
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=32)
    remote_port: int = Field(ge=1024, le=65535, description="the jump host's loopback port that leads here")
    alert_after: int | None = Field(None, ge=1, le=7 * 86400, description="seconds; default 900")
    host_key: str | None = Field(None, max_length=2000, description="the jump host's key, pasted, to pin at once")


class PublicKeyOut(BaseModel):
    key: str | None = Field(description="the appliance's public key; null until remote access is configured")
    fingerprint: str | None
    authorized_keys_line: str | None


class HostKeyOut(BaseModel):
    type: str
    fingerprint: str
    key: str


class TrustRequest(Strict):
    fingerprint: str | None = Field(None, max_length=60, description="SHA256:… of the scanned (pending) key")
    key: str | None = Field(None, max_length=2000, description="or the key itself, pasted")


class RemoteSessionsRequest(Strict):
    allowed: bool
