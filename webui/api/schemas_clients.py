"""Request and response models of the clients, recovery points, browse, restore and alerts routes.

Requests are tight (lengths, patterns, no unknown fields) so that a malformed request is a 400 that names the
field before any service or ZFS sees it; the services then check meaning (a valid schedule, a SPEC, a safe path)
and answer 400 with their own message.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from webui.api.schemas import ErrorDetail, Strict

Kind = Literal["smb", "agent", "both"]
Source = Literal["smb", "agent", "manual", "schedule", "external"]
ClientName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$", examples=["acme-fs1"])]
Duration = Annotated[str, Field(min_length=1, max_length=32, examples=["24h", "7d", "0"])]
PointRef = Annotated[str, Field(min_length=1, max_length=300, examples=["share@bw-20261126T143400Z-manual"])]
PointPath = Annotated[str, Field(max_length=4096, description="relative to the point's root; '' is the root")]
MAX_PATHS = 1000


def _printable(value: str | None) -> str | None:
    """Text from outside must be encodable (no lone surrogates); what it means is the service's to judge."""
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


class ClientFields(Strict):
    quota: str | None = Field(None, max_length=32, description="'none', or a size such as 500G (at least 64 MiB)")
    rpo: Duration | None = Field(None, description="the oldest the last good point may be, e.g. 24h")
    schedule: str | None = Field(None, max_length=100, description="off, 'every 1h', or a cron expression")
    window: str | None = Field(None, max_length=64, description="e.g. 'mon-fri 20:00-06:00'; null: any time")
    retention: str | None = Field(None, max_length=200, description="a retention SPEC, e.g. last=24,daily=7")
    lock: Duration | None = Field(None, description="immutability lock of new points, e.g. 7d; 0 for none")
    notes: str | None = Field(None, max_length=2000)

    _text = field_validator("quota", "schedule", "window", "retention", "notes", "rpo", "lock")(_printable)


class ClientCreate(ClientFields):
    name: ClientName
    kind: Kind


class ClientUpdate(ClientFields):
    """Only the fields given change; ``quota: null`` removes the quota and ``window: null`` allows any time."""

    kind: Kind | None = None


class DestroyConfirmation(Strict):
    confirm: str = Field(max_length=64, description="the client's name, typed again")


class ClientListQuery(Strict):
    all: bool = Field(False, description="include removed clients (their data is kept)")


class ScheduleStatusOut(BaseModel):
    client: str
    schedule: str
    window: str | None
    last_fire: float | None
    last_job_id: int | None
    next_run: float | None


class UsageOut(BaseModel):
    used_bytes: int
    referenced_bytes: int
    available_bytes: int
    quota_bytes: int | None
    areas: dict[str, dict[str, int]]


class PointOut(BaseModel):
    id: str = Field(description="AREA@SNAPSHOT, the point's name within its client")
    client: str
    area: str
    snapshot: str
    created_at: float
    created: str
    used_bytes: int
    referenced_bytes: int
    source: Source
    created_by: str | None
    job_id: int | None
    pinned: bool
    locked_until: float | None
    locked: bool
    verified: Literal["unverified", "verified", "failed"]
    holds: int
    managed: bool


class RpoOut(BaseModel):
    client: str
    target_seconds: int
    last_good_at: float | None
    last_good_point: str | None
    age_seconds: float | None
    state: Literal["ok", "stale", "no_point"]
    message: str
    light: Literal["green", "amber", "red", "grey"] = Field(description="as the dashboard shows it")


class ClientOut(BaseModel):
    name: str
    uuid: str
    dataset: str
    state: Literal["active", "removed"]
    created_at: float
    updated_at: float
    kind: Kind
    quota_bytes: int | None
    rpo_seconds: int
    rpo: str
    schedule: str
    window: str | None
    retention: str
    lock_seconds: int
    lock: str
    notes: str
    schedule_status: ScheduleStatusOut
    usage: UsageOut | None
    points: int | None
    last_point: PointOut | None
    rpo_status: RpoOut | None
    error: ErrorDetail | None = Field(description="why ZFS could not be read, if it could not")


class ClientList(BaseModel):
    clients: list[ClientOut]


class PointList(BaseModel):
    client: str
    points: list[PointOut]


class SnapshotRequest(Strict):
    areas: list[Annotated[str, Field(pattern=r"^(share|files|images/[0-9]{1,4})$")]] | None = Field(
        None, min_length=1, max_length=32, description="datasets to snapshot; default: all of the client's"
    )


class PrunePlanQuery(Strict):
    spec: str | None = Field(None, max_length=200, description="preview this SPEC instead of the saved one")

    _text = field_validator("spec")(_printable)


class PrunePlanOut(BaseModel):
    client: str
    policy: dict[str, Any]
    now: float
    summary: str
    destroy: list[PointOut]
    keep_count: int
    areas: dict[str, Any]


class BrowseOpen(Strict):
    point: PointRef


class BrowseSessionOut(BaseModel):
    id: str
    client: str
    point: str
    snapshot: str
    created_by: str | None
    created_at: float
    last_used_at: float
    expires_at: float


class BrowseQuery(Strict):
    path: PointPath = ""

    _text = field_validator("path")(_printable)


class FileQuery(Strict):
    path: Annotated[str, Field(min_length=1, max_length=4096)]

    _text = field_validator("path")(_printable)


class EntryOut(BaseModel):
    name: str
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mtime: float
    target: str | None
    utf8: bool = Field(description="false: the name on disk is not UTF-8 (shown with U+FFFD); zip its folder")


class BrowseListing(BaseModel):
    session: BrowseSessionOut
    path: str
    entries: list[EntryOut]


class ZipRequest(Strict):
    paths: list[PointPath] = Field(min_length=1, max_length=MAX_PATHS)
    compress: bool = False

    @field_validator("paths")
    @classmethod
    def _paths_text(cls, value: list[str]) -> list[str]:
        for path in value:
            _printable(path)
        return value


class RestoreRequest(Strict):
    point: PointRef
    paths: list[PointPath] = Field(min_length=1, max_length=MAX_PATHS)
    target: PointPath = Field("", description="folder of the live dataset to restore into ('' is its top)")
    overwrite: bool = Field(False, description="also replace files that are newer in the live data")

    @field_validator("paths")
    @classmethod
    def _paths_text(cls, value: list[str]) -> list[str]:
        for path in value:
            _printable(path)
        return value

    _text = field_validator("target", "point")(_printable)


class AlertQuery(Strict):
    all: bool = Field(False, description="include cleared alerts")
    category: str | None = Field(None, pattern=r"^[a-z][a-z0-9_.-]{0,31}$")
    limit: int = Field(100, ge=1, le=500)


class AlertOut(BaseModel):
    id: int
    key: str
    level: Literal["info", "warning", "critical"]
    category: str
    subject: str | None
    message: str
    state: Literal["active", "cleared"]
    raised_at: float
    last_seen_at: float
    cleared_at: float | None
    count: int


class AlertList(BaseModel):
    alerts: list[AlertOut]
