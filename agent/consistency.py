"""How consistent a view of a disk the agent can read, and the means to get a better one.

- ``snapshot``: an LVM logical volume is read through a temporary LVM snapshot (removed afterwards).
- ``unmounted``: a block device mounted nowhere and open for writing by no process.
- ``readonly``: a block device mounted read-only everywhere it is mounted.
- ``not-in-use``: an image file open for writing by no process (and not attached to a mounted loop device).
- ``crash``: anything else — mounted read-write or open for writing: the image is what a power cut would
  have left (a journalling filesystem recovers from it, an open database may not). The agent says so.

Linux only (``/proc``, ``/sys``); elsewhere every view is ``crash``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

from agent.transport import AgentError


def _dev_id(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if stat.S_ISBLK(st.st_mode) else None


def _loops_of(path: str) -> list[str]:
    """Loop devices whose backing file is ``path``."""
    real = os.path.realpath(path)
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().strip() == real:
                found.append(f"/dev/{backing.parent.parent.name}")
    return found


def mounts(path: str) -> list[tuple[str, bool]]:
    """Where ``path`` (a block device, or a file behind a loop device) is mounted: (mount point, read-only)."""
    ids = {i for i in [_dev_id(path), *(_dev_id(d) for d in _loops_of(path))] if i}
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 5 and fields[2] in ids:
                found.append((fields[4].replace("\\040", " "), "ro" in fields[5].split(",")))
    return found


def mounted_at(path: str) -> str | None:
    found = mounts(path)
    return found[0][0] if found else None


def writers(path: str) -> list[int]:
    """Processes (other than this one) holding ``path`` open for writing."""
    real = os.path.realpath(path)
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) != real:
                        continue
                    flags = next(
                        int(line.split()[1], 8)
                        for line in (proc / "fdinfo" / fd.name).read_text().splitlines()
                        if line.startswith("flags:")
                    )
                    if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                        pids.append(int(proc.name))
                        break
    return pids


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AgentError(f"{name} is not installed", "install the LVM tools (lvm2) to read LVM snapshots")
    return found


def _lvm_volume(path: str) -> str | None:
    """``VG/LV`` when ``path`` is an LVM logical volume (and the LVM tools are installed)."""
    dev = _dev_id(path)
    if dev is None or shutil.which("lvs") is None:
        return None
    try:
        uuid = Path(f"/sys/dev/block/{dev}/dm/uuid").read_text().strip()
    except OSError:
        return None
    if not uuid.startswith("LVM-") or "-" in uuid[4:]:  # a snapshot's own devices carry a suffix
        return None
    out = subprocess.run(  # noqa: S603 (fixed arguments, the tool resolved by which)
        [_tool("lvs"), "--noheadings", "--separator", "/", "-o", "vg_name,lv_name", os.path.realpath(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None if out.returncode == 0 else None


@contextlib.contextmanager
def _lvm_snapshot(volume: str) -> Iterator[str]:
    vg = volume.split("/", 1)[0]
    snap = f"bulwark-{secrets.token_hex(4)}"
    made = subprocess.run(  # noqa: S603 (fixed arguments, the tool resolved by which)
        [_tool("lvcreate"), "--snapshot", "--extents", "10%ORIGIN", "--name", snap, volume],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise AgentError(
            f"could not create an LVM snapshot of {volume}: {made.stderr.strip()[:300]}",
            f"free space in volume group {vg} (the snapshot takes 10% of the volume) or run without "
            "--require-consistent to read the live volume",
        )
    try:
        yield f"/dev/{vg}/{snap}"
    finally:
        subprocess.run([_tool("lvremove"), "--force", f"{vg}/{snap}"], capture_output=True, check=False)  # noqa: S603


@contextlib.contextmanager
def view(source: str, *, require_consistent: bool = False) -> Iterator[tuple[str, str, str]]:
    """The path to read ``source`` from, its consistency level and a note for the user (empty when fine)."""
    if not os.path.exists(source):
        raise AgentError(f"{source} does not exist", "give a block device or a disk image file")
    volume = _lvm_volume(source)
    if volume is not None:
        with _lvm_snapshot(volume) as snap:
            yield snap, "snapshot", ""
        return
    is_dev = _dev_id(source) is not None
    mounted = mounts(source)
    busy = writers(source)
    if mounted and all(ro for _, ro in mounted) and not busy:
        yield source, "readonly", ""
        return
    if not mounted and not busy:
        yield source, ("unmounted" if is_dev else "not-in-use"), ""
        return
    why = (
        f"{source} is mounted read-write at {next(m for m, ro in mounted if not ro)}"
        if any(not ro for _, ro in mounted)
        else f"{source} is open for writing by process(es) {', '.join(map(str, busy[:5]))}"
    )
    note = (
        f"{why} and is not an LVM volume: this image is crash-consistent only (what a power cut would leave); "
        "unmount it or stop the writers for a consistent image"
    )
    if require_consistent:
        raise AgentError(f"no consistent view of {source}: {why}", "unmount it, stop the writers, or use LVM")
    yield source, "crash", note
