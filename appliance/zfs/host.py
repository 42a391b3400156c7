"""The ZFS userland on the other end of a runner: this machine, or an OpenZFS test VM."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.system.errors import CommandFailed, UnexpectedOutput
from appliance.system.runner import DEFAULT_TIMEOUT, CommandResult, Runner
from appliance.zfs import capabilities
from appliance.zfs.capabilities import ZFS_FUSE, Capabilities
from appliance.zfs.errors import DatasetBusy, classify

# zfs-fuse unmounts asynchronously: 'zfs destroy' of a mounted filesystem unmounts it and then finds it
# still "busy", and 'zpool destroy' right after a create or an import can find the pool "busy" while its
# mounts settle. Nothing is holding it: the same command succeeds when tried again (once per level of
# mounted descendants). A refusal of the unmount itself ("umount failed") is a real busy and not retried.
FUSE_BUSY_ATTEMPTS = 10
_FUSE_SPURIOUS_BUSY = re.compile(r"^cannot destroy '[^']*': (dataset|pool) is busy$", re.MULTILINE)


@dataclass(frozen=True)
class ZfsHost:
    runner: Runner
    caps: Capabilities

    @classmethod
    def detect(cls, runner: Runner) -> ZfsHost:
        try:
            caps = capabilities.detect(runner)
        except CommandFailed as exc:
            raise classify(exc, "zfs") from exc
        return cls(runner, caps)

    def zfs(
        self,
        *args: str,
        subject: str = "",
        input: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> CommandResult:
        """Run ``zfs ARGS``; a failure becomes the typed error it stands for about ``subject``."""
        return self._run(["zfs", *args], subject, input, timeout)

    def zpool(self, *args: str, subject: str = "", timeout: float | None = DEFAULT_TIMEOUT) -> CommandResult:
        return self._run(["zpool", *args], subject, None, timeout)

    def retry_spurious_busy(self, call: Callable[[], CommandResult]) -> CommandResult:
        """Run ``call`` (a destroy); on zfs-fuse, try again while it fails only because a mount is
        still settling (see ``FUSE_BUSY_ATTEMPTS``)."""
        attempt = 1
        while True:
            try:
                return call()
            except DatasetBusy as exc:
                cause = exc.__cause__
                stderr = cause.stderr if isinstance(cause, CommandFailed) else ""
                spurious = self.caps.implementation == ZFS_FUSE and _FUSE_SPURIOUS_BUSY.search(stderr)
                if not spurious or attempt >= FUSE_BUSY_ATTEMPTS:
                    raise
            time.sleep(0.01 * attempt)
            attempt += 1

    def _run(self, argv: list[str], subject: str, input: bytes | None, timeout: float | None) -> CommandResult:
        try:
            return self.runner.run(argv, input=input, timeout=timeout)
        except CommandFailed as exc:
            raise classify(exc, subject or (argv[-1] if len(argv) > 1 else argv[0])) from exc


def split_rows(result: CommandResult, columns: int) -> list[list[str]]:
    """Split ``-H`` output into rows of exactly ``columns`` tab-separated fields."""
    rows: list[list[str]] = []
    for line in result.out.splitlines():
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != columns:
            raise UnexpectedOutput(" ".join(result.argv[:2]), line)
        rows.append(fields)
    return rows


def chunks(items: Sequence[str], size: int = 256) -> list[Sequence[str]]:
    """Split a long list of names so that no argv grows without bound."""
    return [items[i : i + size] for i in range(0, len(items), size)]
