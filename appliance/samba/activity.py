"""What clients are doing on their shares, and recovery points taken when a backup has finished.

``smbstatus --json`` (Samba 4.16+) lists open files with their access masks; a file opened with write, append or
delete access counts as *open for writing*. A point is never taken of a share while such a file is open (the
backup software is still writing), except by the schedule. The "backup finished" trigger: after a share's
content changed, once it has had no open files and no change for the configured quiet time, bulwarkd queues a
point with source ``smb``. The content's fingerprint (bytes referenced plus the newest modification time and the
number of entries) is stored in the settings table, so a restarted daemon does not take a point twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from appliance.clients import jobs, service
from appliance.clients.model import Client
from appliance.samba import shares
from appliance.samba.conf import Layout
from appliance.store import Store
from appliance.system.errors import Busy, InvalidInput, UnexpectedOutput
from appliance.system.runner import Runner
from appliance.zfs import properties
from appliance.zfs.host import ZfsHost

log = logging.getLogger("bulwark.samba.activity")

WRITE_BITS = ("WRITE_DATA", "APPEND_DATA", "DELETE", "WRITE_EA", "WRITE_ATTRIBUTES")
QUIET_KEY = "smb.quiet."
P_OPEN_FILES = "bulwark:open-for-writing"
MAX_WALK = 100_000


class FilesOpenForWriting(Busy):
    """Share {} has files open for writing ({}); a recovery point now would capture a half-written backup."""

    code = "smb_files_open"
    hint = "Let the backup finish (or close the files), then trigger again; the schedule takes a point regardless."


@dataclass(frozen=True)
class OpenFile:
    share_path: str
    name: str
    writing: bool
    user_ids: tuple[int, ...]


def parse_status(text: str) -> list[OpenFile]:
    """The open files of ``smbstatus --json`` output (strict about the shape it relies on)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UnexpectedOutput("smbstatus --json", text[:200]) from exc
    if not isinstance(data, dict):
        raise UnexpectedOutput("smbstatus --json", text[:200])
    files = data.get("open_files", {})
    if not isinstance(files, dict):
        raise UnexpectedOutput("smbstatus --json", str(files)[:200])
    out = []
    for entry in files.values():
        try:
            opens = entry["opens"].values()
            writing = any(any(o["access_mask"].get(bit) for bit in WRITE_BITS) for o in opens)
            out.append(OpenFile(entry["service_path"], entry["filename"], writing, tuple(o["uid"] for o in opens)))
        except (KeyError, TypeError, AttributeError) as exc:
            raise UnexpectedOutput("smbstatus --json", json.dumps(entry)[:200]) from exc
    return out


def open_files(runner: Runner, layout: Layout) -> list[OpenFile]:
    if not layout.conf.exists():
        return []
    result = runner.run(["smbstatus", "--json", "-s", str(layout.conf)], ok_codes=range(256), timeout=30)
    if result.returncode != 0:
        if "not running" in result.err.lower() or not result.out.strip():
            return []
        raise UnexpectedOutput("smbstatus --json", result.err[:200])
    return parse_status(result.out)


def open_on(files: list[OpenFile], path: str) -> list[OpenFile]:
    return [f for f in files if f.share_path == path or f.share_path.startswith(path.rstrip("/") + "/")]


def writing_now(store: Store, zfs: ZfsHost, runner: Runner, client: Client) -> list[str]:
    """The files of ``client``'s share open for writing now (sorted names)."""
    if not shares.has_share(client):
        return []
    path = shares.share_path(zfs, client)
    return sorted({f.name for f in open_on(open_files(runner, shares.layout(store)), path) if f.writing})


def refuse_if_writing(store: Store, zfs: ZfsHost, runner: Runner, client: Client) -> None:
    """Raise :class:`FilesOpenForWriting` if a file of ``client``'s share is open for writing now."""
    busy = writing_now(store, zfs, runner, client)
    if busy:
        raise FilesOpenForWriting(client.name, ", ".join(busy[:5]))


def mark_open_files(zfs: ZfsHost, snapshot: str, names: list[str]) -> None:
    """Mark a point the schedule took while files were open for writing (it may hold a half-written backup)."""
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    properties.set_properties(zfs, snapshot, {P_OPEN_FILES: shown[:1000]})


def open_files_marks(zfs: ZfsHost, client: Client) -> dict[str, str]:
    """Snapshot name -> files that were open for writing, for the share's marked points."""
    ds = client.area_dataset("share")
    found = properties.get(zfs, [ds], (P_OPEN_FILES,), depth=1)
    marks = {name: props.get(P_OPEN_FILES) for name, props in found.items() if "@" in name}
    return {name: prop.value for name, prop in marks.items() if prop is not None and prop.is_set}


def trigger(store: Store, zfs: ZfsHost, runner: Runner, name: str, *, by: str) -> int:
    """The explicit trigger (backup software's post-job script): queue a point of the share; returns the job id.
    Refused while a file is open for writing."""
    client = service.get_client(store, name)
    if not shares.has_share(client):
        raise InvalidInput(f"client {name!r} has no SMB share (its kind is {client.kind})")
    refuse_if_writing(store, zfs, runner, client)
    job = jobs.submit_snapshot(store, name, by=by, areas=["share"], source="smb")
    _remember(store, name, fingerprint(zfs, client), time.time())
    return job


def fingerprint(zfs: ZfsHost, client: Client) -> list[int]:
    """What changes when a share's content changes: referenced bytes, entries, newest mtime (ns)."""
    ds = client.area_dataset("share")
    referenced = int(properties.get(zfs, [ds], ("referenced",))[ds]["referenced"].value)
    root = shares.share_path(zfs, client)
    count, newest = 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in (*dirnames, *filenames):
            count += 1
            try:
                st = os.lstat(os.path.join(dirpath, entry))
            except FileNotFoundError:
                continue
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
        if count > MAX_WALK:
            break
    return [referenced, count, newest]


def quiet_state(store: Store, name: str) -> dict[str, Any]:
    """The quiet-share trigger's memory of a share: its last fingerprint, when it changed, what was pointed."""
    raw = store.get_setting(QUIET_KEY + name)
    return raw if isinstance(raw, dict) else {}


def _remember(store: Store, name: str, fp: list[int], at: float) -> None:
    store.set_setting(QUIET_KEY + name, {"fingerprint": fp, "pointed": fp, "changed_at": at})


@dataclass
class QuietWatcher:
    """bulwarkd's "backup finished" trigger: call :meth:`tick` every few seconds."""

    store: Store
    zfs: ZfsHost
    runner: Runner

    def tick(self, now: float | None = None) -> list[int]:
        at = time.time() if now is None else now
        settings = shares.load_settings(self.store)
        layout = shares.layout(self.store, settings)
        files = open_files(self.runner, layout)
        queued = []
        for client in service.list_clients(self.store):
            if not shares.has_share(client):
                continue
            job = self._check(client, files, settings.quiet_seconds, at)
            if job is not None:
                queued.append(job)
        return queued

    def _check(self, client: Client, files: list[OpenFile], quiet: int, at: float) -> int | None:
        fp = fingerprint(self.zfs, client)
        state = quiet_state(self.store, client.name)
        if not state:  # first sight: what is there now is the baseline
            _remember(self.store, client.name, fp, at)
            return None
        if fp != state.get("fingerprint"):
            state = {**state, "fingerprint": fp, "changed_at": at}
            self.store.set_setting(QUIET_KEY + client.name, state)
        if fp == state.get("pointed"):
            return None
        if open_on(files, shares.share_path(self.zfs, client)):
            return None
        if at - float(state.get("changed_at", at)) < quiet:
            return None
        job = jobs.submit_snapshot(self.store, client.name, by="smb-quiet", areas=["share"], source="smb")
        self.store.set_setting(QUIET_KEY + client.name, {**state, "pointed": fp})
        log.info("share %s quiet for %d s after writes: recovery point queued as job %d", client.name, quiet, job)
        return job
