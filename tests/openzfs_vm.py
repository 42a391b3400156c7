"""The OpenZFS test machine for a test session (``appliance.system.vm``), and files inside it.

The machine is built by ``image/openzfs-vm/build.py`` (``./dev.sh test`` builds it first, or finds it in the
cache, and passes its directory in ``BULWARK_OPENZFS_VM``). Without that variable the newest cached build of
the current build files is used. When there is none, the OpenZFS tests are skipped with the reason, unless
``BULWARK_REQUIRE_OPENZFS=1`` (as ``./dev.sh test`` sets it) makes that a failure.

One machine serves the whole session: booted (~15 s) the first time a test needs it, with four fresh
sparse 1 GiB disks (``/dev/vda``…``/dev/vdd``), and powered off at the end. Tests make their pools on sparse
files in the machine's ``/tmp`` (a tmpfs), so that many pools fit; the whole disks serve the tests that need
real block devices (partitions made by ``zpool create``, a degraded mirror of disks).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.system.runner import PIPE, local_runner
from appliance.system.vm import OpenZfsVm
from appliance.system.vmrunner import VmRunner

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "image" / "openzfs-vm" / "build.py"
ARTIFACTS_ENV = "BULWARK_OPENZFS_VM"
REQUIRE_ENV = "BULWARK_REQUIRE_OPENZFS"
# strerror texts in the machine's error messages → errno, so that file helpers fail as Python's would
_ERRNOS = {os.strerror(e): e for e in (errno.EDQUOT, errno.EROFS, errno.ENOSPC, errno.ENOENT, errno.EBUSY)}


def find_artifacts() -> tuple[Path | None, str]:
    """The machine to boot, or None and why not."""
    given = os.environ.get(ARTIFACTS_ENV)
    if given:
        path = Path(given)
        if (path / "manifest.json").is_file():
            return path, ""
        return None, f"{ARTIFACTS_ENV}={given} holds no built machine"
    found = local_runner().run([sys.executable, str(BUILD), "--find"], ok_codes=(0, 1), timeout=60)
    if found.returncode == 0:
        return Path(found.out.strip()), ""
    return None, (
        "no OpenZFS test machine is built for these build files; build it with "
        "'./dev.sh build-openzfs-vm' (needs the Debian mirror; ~5 minutes the first time)"
    )


@pytest.fixture(scope="session")
def openzfs_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenZfsVm]:
    """The running OpenZFS test machine (its ``runner`` runs commands in it)."""
    if os.geteuid() != 0:
        pytest.skip("the OpenZFS test machine needs root")
    artifacts, reason = find_artifacts()
    if artifacts is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"OpenZFS tests are required here, but {reason}", pytrace=False)
        pytest.skip(reason)
    vm = OpenZfsVm(artifacts, tmp_path_factory.mktemp("openzfs-vm"))
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


class GuestFiles:
    """File operations inside the machine, through its runner (the test set-up's shell requests)."""

    def __init__(self, runner: VmRunner) -> None:
        self.runner = runner

    def sh(self, script: str, *args: object, input: bytes | None = None) -> bytes:
        """Run a shell snippet; a failure raises OSError with the errno its message names (as Python would)."""
        result = self.runner.shell(script, *map(str, args), input=input, ok_codes=range(256), timeout=300)
        if result.returncode != 0:
            message = result.err.strip()
            code = next((e for text, e in _ERRNOS.items() if text in message), errno.EIO)
            raise OSError(code, f"{message} (in the OpenZFS machine)")
        return result.stdout

    def write(self, path: Path, data: bytes) -> None:
        self.sh('dd of="$1" bs=65536', path, input=data)

    def write_random(self, path: Path, size: int) -> None:
        # (dd in 64 KiB blocks: busybox head and cat copy in small ones, ten times slower under emulation)
        block = 65536 if size % 65536 == 0 else size
        assert block <= 65536, "sizes are multiples of 64 KiB, or smaller"
        self.sh('dd if=/dev/urandom of="$1" bs="$2" count="$3"', path, block, size // block)

    def overwrite_random(self, path: Path, offset: int, size: int) -> None:
        """Overwrite ``size`` bytes at ``offset`` (MiB-aligned) with random ones, not truncating."""
        mib = 1 << 20
        assert offset % mib == 0 and size % mib == 0
        self.sh('dd if=/dev/urandom of="$1" bs=1M seek="$2" count="$3" conv=notrunc', path, offset // mib, size // mib)

    def read(self, path: Path) -> bytes:
        return self.sh('dd if="$1" bs=65536', path)

    def exists(self, path: Path) -> bool:
        return self.runner.shell('[ -e "$1" ]', str(path), ok_codes=(0, 1)).returncode == 0

    def ismount(self, path: Path) -> bool:
        return str(path) in {line.split()[1] for line in self.read(Path("/proc/self/mounts")).decode().splitlines()}

    def listdir(self, path: Path) -> list[str]:
        return self.sh('ls -A1 "$1"', path).decode().splitlines()

    def unlink(self, path: Path) -> None:
        self.sh('rm -- "$1"', path)

    def rename(self, path: Path, target: Path) -> None:
        self.sh('mv -- "$1" "$2"', path, target)

    def mkdir(self, path: Path) -> None:
        self.sh('mkdir -p -- "$1"', path)

    def remove_tree(self, path: Path) -> None:
        self.sh('rm -rf -- "$1"', path)

    def sparse(self, paths: list[Path], size: int) -> None:
        self.sh('size=$1; shift; mkdir -p "$(dirname "$1")" && truncate -s "$size" "$@"', size, *paths)

    def size_and_blocks(self, path: Path) -> tuple[int, int]:
        size, blocks = self.sh('stat -c "%s %b" "$1"', path).split()
        return int(size), int(blocks)

    def tree(self, path: Path) -> dict[str, str]:
        """SHA-256 of each file in a directory, by name."""
        out = self.sh('cd "$1" && for f in * .[!.]*; do [ -f "$f" ] && sha256sum "$f"; done; true', path)
        digests = {}
        for line in out.decode().splitlines():
            digest, name = line.split("  ", 1)
            digests[name] = digest
        return dict(sorted(digests.items()))

    @contextlib.contextmanager
    def hold_open(self, path: Path) -> Iterator[None]:
        """Keep ``path`` open for writing in the machine while in the block."""
        script = 'exec 3>>"$1" && echo ready && exec cat > /dev/null'
        with self.runner.stream(["/bin/sh", "-c", script, "sh", str(path)], stdin=PIPE, stdout=PIPE) as proc:
            assert proc.stdout.readline() == b"ready\n"
            yield


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
