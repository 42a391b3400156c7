"""Request and response models of the backup agent routes: enrollment codes, credentials, per-client agent
settings and agent jobs (their progress and report)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from webui.api.schemas import Strict
from webui.api.schemas_clients import ClientName

AgentJobState = Literal["open", "committed", "failed", "aborted"]
AgentId = Annotated[str, Field(pattern=r"^ag-[0-9a-f]{16}$", examples=["ag-0011223344556677"])]


class AgentOut(BaseModel):
    id: str
    client: str
    hostname: str
    state: Literal["active", "revoked"]
    created_at: float
    last_seen_at: float | None
    revoked_at: float | None


class AgentList(BaseModel):
    client: str
    agents: list[AgentOut]


class EnrollCodeOut(BaseModel):
    code: str = Field(description="single use, valid 24 hours; shown only in this answer")
    client: str
    expires_at: float
    server: str = Field(description="https://HOST:PORT of this appliance as the request reached it")
    command: str = Field(description="the command to run on the client")


class AgentSettingsOut(BaseModel):
    client: str
    paths: list[str] = Field(description="backed up by 'bulwark-agent backup' when it is given no path")
    bwlimit_kibps: int | None = Field(description="KiB/s; the agent uses the lower of this and its own --bwlimit")
    window: str | None = Field(description="backup window, e.g. '22:00-06:00'; null: any time")
    window_open: bool
    window_opens_at: float | None = Field(description="when a closed window opens next")
    timezone: str
    updated_at: float | None
    updated_by: str | None


def _text(value: str | None) -> str | None:
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text") from None
    return value


class AgentSettingsUpdate(Strict):
    """Only the fields given change; ``bwlimit_kibps: null`` (or 0) removes the limit, ``window: null`` allows
    any time, ``paths: []`` clears the default paths."""

    paths: list[Annotated[str, Field(min_length=1, max_length=1024)]] | None = Field(None, max_length=64)
    bwlimit_kibps: int | None = Field(None, ge=0, le=100 * 1024 * 1024)
    window: str | None = Field(None, max_length=64, description="e.g. '22:00-06:00' or 'mon-fri 20:00-06:00'")

    _window = field_validator("window")(_text)

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        for path in value or []:
            _text(path)
        return value


class AgentJobOut(BaseModel):
    id: str
    client: str
    agent_id: str
    hostname: str
    kind: Literal["files", "image"]
    image: str | None
    state: AgentJobState
    base_point: str | None
    point: str | None
    files: int
    bytes_scanned: int
    bytes_sent: int
    error: str | None
    started_at: float
    finished_at: float | None
    duration: float | None
    phase: str | None
    files_done: int | None
    files_total: int | None
    bytes_done: int | None
    bytes_total: int | None
    phase_started_at: float | None
    progress_at: float | None
    percent: float | None
    eta_seconds: float | None
    stalled: bool = Field(description="open, and no report from the agent for 5 minutes")


class AgentJobList(BaseModel):
    jobs: list[AgentJobOut]


class AgentJobQuery(Strict):
    client: ClientName | None = None
    open: bool = Field(False, description="only open jobs")
    limit: int = Field(50, ge=1, le=1000)
