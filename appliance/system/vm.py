"""The OpenZFS test machine: QEMU (TCG) with the kernel and initramfs that ``image/openzfs-vm/build.py``
builds, fresh sparse disks, and the guest agent's virtio-serial ports, through which
:class:`~appliance.system.vmrunner.VmRunner` runs commands.

QEMU is started through the local runner (:meth:`LocalRunner.spawn`, the one door) and stopped by PID after
the guest has powered itself off.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.system.errors import ExternalCommandError
from appliance.system.runner import Service, local_runner
from appliance.system.vmrunner import VmChannelError, VmRunner

log = logging.getLogger("bulwark.command")

QEMU = "qemu-system-x86_64"


@dataclass
class OpenZfsVm:
    """The OpenZFS test machine: QEMU (TCG) with the built kernel and initramfs, fresh sparse disks
    (``/dev/vda``… in the guest) and the agent's ports. :meth:`start` returns its runner."""

    artifacts: Path  # vmlinuz, initrd.img (image/openzfs-vm/build.py)
    workdir: Path  # disks and the console log (created; the disks are removed by stop())
    disks: int = 4
    disk_size: int = 1 << 30
    memory_mib: int = 2048
    cpus: int = 2
    ports: int = 8  # the control port and seven command ports
    service: Service | None = None
    runner: VmRunner | None = None
    _socket_dir: Path | None = None

    @property
    def disk_paths(self) -> list[str]:
        """The disks' device paths in the machine."""
        return [f"/dev/vd{chr(ord('a') + i)}" for i in range(self.disks)]

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def _disk_files(self) -> list[Path]:
        return [self.workdir / f"disk-{i}.img" for i in range(self.disks)]

    def qemu_argv(self, sockets: Sequence[Path]) -> list[str]:
        argv = [
            QEMU,
            "-name",
            "bulwark-openzfs-vm",
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            str(self.cpus),
            "-m",
            str(self.memory_mib),
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            str(self.artifacts / "vmlinuz"),
            "-initrd",
            str(self.artifacts / "initrd.img"),
            "-append",
            "console=ttyS0 panic=-1 loglevel=4",
            "-serial",
            f"file:{self.console_log}",
        ]
        for path in self._disk_files():
            argv += ["-drive", f"file={path},if=virtio,format=raw,cache=unsafe,discard=unmap"]
        argv += ["-device", "virtio-serial-pci,id=vs0"]
        for i, sock in enumerate(sockets):
            argv += ["-chardev", f"socket,id=bw{i},path={sock},server=on,wait=off"]
            argv += ["-device", f"virtserialport,bus=vs0.0,chardev=bw{i},name=bulwark.{i}"]
        return argv

    def start(self, timeout: float = 300.0) -> VmRunner:
        """Boot the machine and wait until its agent answers (~15 s under TCG)."""
        for name in ("vmlinuz", "initrd.img"):
            if not (self.artifacts / name).is_file():
                raise FileNotFoundError(self.artifacts / name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for path in self._disk_files():
            with path.open("wb") as disk:
                disk.truncate(self.disk_size)
        # (unix socket paths are short: at most 107 bytes)
        self._socket_dir = Path(tempfile.mkdtemp(prefix="bwvm-", dir="/tmp"))
        sockets = [self._socket_dir / f"p{i}" for i in range(self.ports)]
        with (self.workdir / "qemu.log").open("wb") as qemu_log:
            self.service = local_runner().spawn(self.qemu_argv(sockets), stdout=qemu_log, stderr=qemu_log)
        try:
            self.runner = self._connect(sockets, time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self.runner

    def _connect(self, sockets: Sequence[Path], deadline: float) -> VmRunner:
        while not all(s.exists() for s in sockets):
            self._check_alive()
            if time.monotonic() > deadline:
                raise VmChannelError("QEMU made no sockets")
            time.sleep(0.02)
        runner = VmRunner(sockets)
        version = runner.wait_ready(max(1.0, deadline - time.monotonic()), self._check_alive)
        assert self.service is not None
        log.info("OpenZFS test machine up (%s, pid %d)", version, self.service.pid)
        return runner

    def _check_alive(self) -> None:
        assert self.service is not None
        if self.service.poll() is not None:
            tail = self.console_log.read_text(errors="replace")[-3000:] if self.console_log.exists() else ""
            qemu = (self.workdir / "qemu.log").read_text(errors="replace")[-2000:]
            raise VmChannelError(f"QEMU exited ({self.service.proc.returncode}): {qemu}\n{tail}")

    def stop(self, timeout: float = 30.0) -> None:
        """Power the machine off (then stop QEMU by PID if it is still there) and remove its disks."""
        if self.runner is not None:
            try:
                self.runner.poweroff()
            except (OSError, ExternalCommandError) as exc:
                log.warning("the test machine did not power off: %s", exc)
            self.runner.close()
            self.runner = None
        if self.service is not None:
            deadline = time.monotonic() + timeout
            while self.service.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            self.service.stop(timeout=10)
            self.service = None
        for path in self._disk_files():
            path.unlink(missing_ok=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
