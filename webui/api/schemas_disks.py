"""Request and response models of the disks API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from webui.api.schemas import Strict

Verdict = Literal["healthy", "warning", "failing", "unknown"]


class MembershipOut(BaseModel):
    pool: str
    vdev: str = Field(description="top-level vdev (e.g. mirror-0), or the device itself in a stripe")
    state: str


class DiskSmartOut(BaseModel):
    verdict: Verdict
    reasons: list[str] = Field(description="each prefixed with its level; the worst first")
    temperature: int | None
    power_on_hours: int | None
    checked_at: float | None = Field(description="when bulwarkd last read SMART; null: not read yet")
    protocol: str
    key: str = Field(description="the disk's identity: wwn:…, serial:… or name:…")


class DiskOut(BaseModel):
    name: str
    node: str
    model: str
    serial: str
    wwn: str
    size_bytes: int
    rotational: bool | None
    kind: str
    by_id: list[str]
    by_path: list[str]
    backing_file: str
    pool: MembershipOut | None
    smart: DiskSmartOut | None = Field(description="null for devices without SMART (loop devices)")


class DiskList(BaseModel):
    disks: list[DiskOut]


class DiskSample(BaseModel):
    at: float
    verdict: Verdict
    temperature: int | None
    counters: dict[str, int]


class DiskDetail(BaseModel):
    disk: DiskOut
    attributes: list[dict[str, Any]]
    nvme: dict[str, Any] | None
    scsi: dict[str, Any] | None
    self_test_log: list[dict[str, Any]]
    self_test_running: int | None
    samples: list[DiskSample]
    tests_started: list[dict[str, Any]]


class DiskQuery(Strict):
    days: int = Field(30, ge=1, le=400, description="history to include")


class SelfTestRequest(Strict):
    kind: Literal["short", "long"]


class SelfTestOut(BaseModel):
    started: bool
    error: str | None = Field(description="why the drive refused, when it did")
