"""Request and response models of the API: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "operator", "viewer"]
JobState = Literal["queued", "running", "succeeded", "failed", "interrupted", "cancelled"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str
    retryable: bool
    details: Any | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# --- system ------------------------------------------------------------------------------------


class ZfsInfo(BaseModel):
    implementation: str | None
    version: str | None = None
    features: list[str] = []
    running: bool


class PoolBrief(BaseModel):
    name: str
    health: str
    size_bytes: int | None = None
    alloc_bytes: int | None = None
    free_bytes: int | None = None
    sizes_exact: bool | None = None


class DaemonInfo(BaseModel):
    running: bool
    pid: int | None = None
    started_at: float | None = None
    last_heartbeat: float | None = None


class StatusOut(BaseModel):
    version: str
    hostname: str
    zfs: ZfsInfo
    pool: PoolBrief
    web: dict[str, int]
    daemon: DaemonInfo
    jobs: dict[str, int]


class VdevOut(BaseModel):
    name: str
    kind: str
    state: str | None
    read_errors: int
    write_errors: int
    checksum_errors: int
    note: str
    group: str | None
    children: list[VdevOut]


class ScanOut(BaseModel):
    function: str
    state: str
    percent: float | None
    errors: int | None
    ended_at: float | None
    text: str


class PoolStatusOut(BaseModel):
    name: str
    state: str
    status: str
    action: str
    scan: ScanOut
    vdevs: VdevOut
    groups: list[VdevOut]
    errors: str


class PoolOut(BaseModel):
    name: str
    health: str
    size_bytes: int
    alloc_bytes: int
    free_bytes: int
    capacity_percent: float
    guid: str
    altroot: str | None
    sizes_exact: bool
    status: PoolStatusOut


class CapacitySample(BaseModel):
    at: float
    size_bytes: int
    alloc_bytes: int
    free_bytes: int
    health: str


class CapacityQuery(Strict):
    days: int = Field(30, ge=1, le=400)


class CapacityOut(BaseModel):
    pool: str
    samples: list[CapacitySample]


class SettingsOut(BaseModel):
    hostname: str
    timezone: str
    require_totp: bool
    web_port: int
    tunnel_listen_port: int | None
    pool_name: str
    pool_layout: str


class SettingsUpdate(Strict):
    hostname: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")
    timezone: str | None = Field(None, min_length=1, max_length=64)
    require_totp: bool | None = None


# --- jobs --------------------------------------------------------------------------------------


class Progress(BaseModel):
    done: int | None
    total: int | None
    text: str | None
    percent: float | None
    eta_seconds: float | None


class JobOut(BaseModel):
    id: int
    kind: str
    params: dict[str, Any]
    state: JobState
    resource: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: Progress
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_by: str | None


class JobList(BaseModel):
    jobs: list[JobOut]


class JobQuery(Strict):
    state: JobState | None = None
    kind: str | None = Field(None, max_length=64)
    limit: int = Field(50, ge=1, le=500)


class LogLine(BaseModel):
    at: float
    level: str
    message: str


class JobDetail(JobOut):
    log: list[LogLine]


class JobCreated(BaseModel):
    job: int


# --- users, tokens, me -------------------------------------------------------------------------

Username = Field(pattern=r"^[a-z][a-z0-9_.-]{0,31}$")


class UserOut(BaseModel):
    username: str
    role: Role
    must_change_password: bool
    created_at: float
    disabled: bool
    totp_enabled: bool


class UserList(BaseModel):
    users: list[UserOut]


class UserCreate(Strict):
    username: str = Username
    role: Role
    password: str | None = Field(None, min_length=10, max_length=1024, description="omit to get a one-time password")


class UserCreated(BaseModel):
    user: UserOut
    one_time_password: str | None


class UserUpdate(Strict):
    role: Role | None = None
    disabled: bool | None = None


class OneTimePassword(BaseModel):
    username: str
    one_time_password: str


class TokenOut(BaseModel):
    id: int
    name: str
    role: Role
    created_by: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    active: bool


class TokenList(BaseModel):
    tokens: list[TokenOut]


class TokenCreate(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$")
    role: Role
    expires_days: int | None = Field(None, ge=1, le=3650)


class TokenCreated(BaseModel):
    token: TokenOut
    secret: str = Field(description="shown once; send it as 'Authorization: Bearer <secret>'")


class MeOut(BaseModel):
    kind: Literal["user", "token"]
    name: str
    role: Role
    remote: bool
    totp_enabled: bool | None


class PasswordChange(Strict):
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=10, max_length=1024)


class TotpSetup(BaseModel):
    secret: str
    uri: str


class TotpEnable(Strict):
    secret: str = Field(pattern=r"^[A-Z2-7]{16,64}$")
    code: str = Field(pattern=r"^\d{6}$")


class Done(BaseModel):
    ok: bool = True


class AuditQuery(Strict):
    limit: int = Field(100, ge=1, le=500)
    before: int | None = Field(None, ge=1, le=2**63 - 1)
    actor: str | None = Field(None, max_length=128)
    action: str | None = Field(None, max_length=64)


class AuditOut(BaseModel):
    id: int
    at: float
    actor: str
    action: str
    target: str | None
    address: str | None
    details: dict[str, Any]


class AuditList(BaseModel):
    entries: list[AuditOut]
