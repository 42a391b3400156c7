"""API models of offsite replication."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from webui.api.schemas import Strict

Name = Field(min_length=1, max_length=32)


class KeyOut(BaseModel):
    id: str
    created_at: float
    retired_at: float | None
    active: bool
    kit_exported_at: float | None


class TargetOut(BaseModel):
    name: str
    type: str
    config: dict[str, Any]
    where: str
    has_secret: bool
    keep_chains: int
    repository_id: str | None
    created_at: float
    updated_at: float


class PolicyOut(BaseModel):
    client: str
    target: str
    enabled: bool
    interval_s: int
    chain_length: int
    chain_age_s: int
    bandwidth: list[str]
    default_kbps: int | None
    next_run_at: float | None
    last_run_at: float | None
    last_job_id: int | None


class ClientOffsite(PolicyOut):
    backlog_bytes: int | None
    backlog_sampled_at: float | None
    rate_bytes_per_s: float | None
    eta_seconds: float | None
    last_stream: dict[str, Any] | None
    streams: int
    stored_bytes: int
    verification: dict[str, Any] | None
    job: dict[str, Any] | None


class OffsiteStatus(BaseModel):
    keys: list[KeyOut]
    kit_exported: bool
    targets: list[TargetOut]
    clients: list[ClientOffsite]


class PassphraseIn(Strict):
    passphrase: str = Field(min_length=1, max_length=1024)


class KitOut(BaseModel):
    filename: str
    kit: str
    keys: list[str]


class TargetIn(Strict):
    name: str = Name
    type: Literal["local", "sftp", "s3"]
    path: str | None = Field(None, max_length=1024)
    require_mount: bool = False
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = Field(None, max_length=32)
    host_key: str | None = Field(None, max_length=2048)
    bucket: str | None = Field(None, max_length=63)
    endpoint: str | None = Field(None, max_length=1024)
    region: str | None = Field(None, max_length=32)
    prefix: str | None = Field(None, max_length=512)
    access_key: str | None = Field(None, max_length=128)
    lock_days: int | None = Field(None, ge=0, le=36500)
    secret: str | None = Field(None, max_length=16384, description="S3 secret key or SFTP private key; never shown")
    keep_chains: int = Field(2, ge=1, le=1000)


class TargetName(Strict):
    name: str = Name


class PolicyIn(Strict):
    client: str = Name
    target: str = Name
    enabled: bool | None = None
    interval_s: int | None = Field(None, ge=300, le=366 * 86400)
    chain_length: int | None = Field(None, ge=1, le=10000)
    chain_age_s: int | None = Field(None, ge=3600, le=3660 * 86400)
    bandwidth: list[str] | None = Field(None, max_length=50)
    default_kbps: int | None = Field(None, ge=1, le=10**8)


class RunIn(Strict):
    target: str = Name


class VerifyIn(Strict):
    target: str = Name
    receive: bool = True


class JobQueued(BaseModel):
    job: int
