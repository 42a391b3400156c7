"""Request and response models of the SMB API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from webui.api.schemas import ErrorDetail, Strict


class SmbServer(BaseModel):
    port: int
    running: bool
    pid: int | None
    error: str | None = None


class SmbSettingsOut(BaseModel):
    port: int
    interfaces: list[str]
    min_protocol: Literal["SMB2_10", "SMB3", "SMB3_11"]
    quiet_seconds: int = Field(description="a share quiet this long after writes gets a recovery point")
    account_prefix: str


class SmbSettingsUpdate(Strict):
    port: int | None = Field(default=None, ge=1, le=65535)
    interfaces: list[str] | None = Field(default=None, max_length=16)
    min_protocol: Literal["SMB2_10", "SMB3", "SMB3_11"] | None = None
    quiet_seconds: int | None = Field(default=None, ge=10, le=86400)
    account_prefix: str | None = Field(default=None, max_length=16)


class ShareOut(BaseModel):
    client: str
    unc: str = Field(description=r"what to type in Windows: \\appliance\client")
    url: str
    user: str
    port: int
    encrypt: bool
    comment: str
    previous_versions: bool


class OpenFileOut(BaseModel):
    name: str
    writing: bool


class RestoreShareOut(BaseModel):
    share: str
    point: str
    unc: str


class RestoreShareRequest(Strict):
    point: str = Field(min_length=1, max_length=300, description="share@NAME: the point to publish read-only")


class ShareDetail(ShareOut):
    open_files: list[OpenFileOut]
    marked_points: dict[str, str] = Field(description="points the schedule took while these files were open")
    versions: int = Field(description="recovery points shown as Previous Versions")
    share_points: list[str] = Field(description="the share's recovery points, newest first")
    restore_share: RestoreShareOut | None = Field(description="the point published read-only as CLIENT-restore")
    last_change_at: float | None
    quiet_seconds: int
    problem: ErrorDetail | None = None


class SmbOverview(BaseModel):
    server: SmbServer
    settings: SmbSettingsOut
    shares: list[ShareOut]


class ShareUpdate(Strict):
    encrypt: bool | None = None
    comment: str | None = Field(default=None, max_length=200)
    previous_versions: bool | None = None


class PasswordRequest(Strict):
    password: str | None = Field(
        default=None, min_length=12, max_length=128, description="omit to have one generated (returned once)"
    )


class PasswordOut(BaseModel):
    unc: str
    user: str
    password: str | None = Field(description="the generated password, shown this once; null when one was given")
