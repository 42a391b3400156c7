#!/usr/bin/env python3
"""Build the OpenZFS test machine, or find it in the cache: a Debian kernel and an initramfs with OpenZFS.

    build.py            build what is missing, print the artifact directory (vmlinuz, initrd.img, manifest.json)
    build.py --find     print the newest cached artifact directory of these build files (no network), or exit 1
    build.py --no-verify  skip the boot test of a new build

Two stages, each cached under ``$BULWARK_VM_CACHE`` (default ``/var/cache/bulwark/openzfs-vm``), outside the
repository, under a key that is the hash of its inputs:

1. ``rootfs-<key>``: a Debian 12 chroot made by ``rootfs.sh`` (debootstrap minbase, the kernel of the current
   ABI with its headers, ``zfs-dkms``/``zfsutils-linux`` from bookworm-backports, whose dkms compiles the
   modules). Key: ``rootfs.sh`` and the exact package versions, resolved first from the mirror with a private
   apt state (the mirror is the host's, from ``/etc/apt/sources.list.d/debian.sources``). ~7 minutes.
2. ``vm-<key>``: ``vmlinuz`` and ``initrd.img`` (busybox-static, the ZFS userland with the libraries ``ldd``
   names and ``libgcc_s.so.1``, the modules in load order, ``init`` and the guest agent compiled statically
   from ``agent.c``), then booted once to check that ``zfs version`` and ``zpool create`` work. Key: the
   rootfs key, this file, ``init``, ``agent.c`` and the host's busybox-static, libc6-dev and gcc versions.
   ~20 seconds.

Without the mirror (no network) the newest artifacts built from these same files are used, with a warning.
Every command goes through the appliance's command runner; any failure stops the build with its output.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from appliance.system.errors import CommandFailed, ExternalCommandError  # noqa: E402
from appliance.system.runner import CommandResult, local_runner  # noqa: E402

CACHE = Path(os.environ.get("BULWARK_VM_CACHE", "/var/cache/bulwark/openzfs-vm"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ROOTFS_SCRIPT = HERE / "rootfs.sh"
VM_FILES = (HERE / "build.py", HERE / "init", HERE / "agent.c")
# Kernel modules for the guest (with their dependencies, in load order), and the ARC limit that leaves the
# VM's memory to the tmpfs holding file-backed test pools.
MODULES = ("virtio_pci", "virtio_blk", "virtio_console", "zfs")
MODULE_PARAMS = {"zfs": "zfs_arc_max=402653184"}
PROGRAMS = ("zfs", "zpool", "zdb", "zstream", "mount.zfs")
HOST_PACKAGES = ("busybox-static", "libc6-dev")
BUSYBOX = Path("/bin/busybox")
KEEP_BUILDS = 3


def say(message: str) -> None:
    print(f"==> openzfs-vm: {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, timeout: float = 600) -> CommandResult:
    return local_runner().run(list(argv), timeout=timeout)


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


# -- versions -------------------------------------------------------------------------------------------


def host_mirrors() -> tuple[str, str]:
    """The Debian and security mirrors of this host's apt sources (deb822), else deb.debian.org."""
    mirror, security = DEFAULT_MIRROR, DEFAULT_SECURITY
    if SOURCES.exists():
        for stanza in SOURCES.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            uris = fields.get("URIs", "").split()
            suites = fields.get("Suites", "").split()
            if not uris:
                continue
            if "bookworm-security" in suites:
                security = uris[0].rstrip("/")
            elif "bookworm" in suites:
                mirror = uris[0].rstrip("/")
    return mirror, security


def apt_options(state: Path) -> list[str]:
    return [
        "-o",
        f"Dir::Etc::SourceList={state / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/nonexistent",
        "-o",
        f"Dir::State={state / 'state'}",
        "-o",
        f"Dir::Cache={state / 'cache'}",
        "-o",
        "Dir::State::status=/dev/null",
        "-o",
        "Acquire::Languages=none",
        "-o",
        "APT::Architectures=amd64",
        "-o",
        "APT::Sandbox::User=root",
    ]


def candidate(opts: list[str], package: str, release: str | None = None) -> str:
    argv = ["apt-cache", *opts]
    if release:
        argv += ["-t", release]
    out = run([*argv, "policy", package]).out
    m = re.search(r"^\s*Candidate: (\S+)$", out, re.MULTILINE)
    if m is None or m.group(1) == "(none)":
        raise SystemExit(f"openzfs-vm: no candidate for {package} on the mirror:\n{out}")
    return m.group(1)


def resolve_versions(mirror: str, security: str) -> dict[str, str]:
    """The exact package versions a build would install now (a private apt state; the host's is untouched)."""
    state = CACHE / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(
        "".join(
            f"deb [signed-by={KEYRING}] {uri} {suite} main contrib\n"
            for uri, suite in (
                (mirror, "bookworm"),
                (mirror, "bookworm-updates"),
                (mirror, "bookworm-backports"),
                (security, "bookworm-security"),
            )
        )
    )
    opts = apt_options(state)
    run(["apt-get", "-q", *opts, "update"], timeout=300)
    depends = run(["apt-cache", *opts, "depends", "linux-image-amd64"]).out
    m = re.search(r"Depends: linux-image-(\S+-amd64)$", depends, re.MULTILINE)
    if m is None:
        raise SystemExit(f"openzfs-vm: cannot tell the kernel ABI from:\n{depends}")
    abi = m.group(1)
    kernel = candidate(opts, f"linux-image-{abi}")
    headers = candidate(opts, f"linux-headers-{abi}")
    zfs = candidate(opts, "zfs-dkms", "bookworm-backports")
    utils = candidate(opts, "zfsutils-linux", "bookworm-backports")
    if kernel != headers or zfs != utils:
        raise SystemExit(f"openzfs-vm: mismatched versions: {kernel} {headers} {zfs} {utils}")
    return {"kernel_abi": abi, "kernel_version": kernel, "zfs_version": zfs}


@functools.cache
def host_versions() -> dict[str, str]:
    versions = {
        pkg: run(["dpkg-query", "-W", "-f", "${Version}", pkg]).out for pkg in HOST_PACKAGES
    }  # (missing: a CommandFailed that names the package)
    versions["gcc"] = run(["gcc", "-dumpfullversion"]).out.strip()
    return versions


def vm_files_hash() -> str:
    return digest(ROOTFS_SCRIPT.read_bytes(), *(p.read_bytes() for p in VM_FILES))


# -- stage 1: the chroot --------------------------------------------------------------------------------


def ensure_rootfs(key: str, mirror: str, security: str, versions: dict[str, str]) -> Path:
    root = CACHE / f"rootfs-{key}"
    if (root / ".bulwark-complete").exists():
        say(f"cached build root {root}")
        return root
    partial = CACHE / f"rootfs-{key}.partial"
    if partial.exists():
        say(f"removing an unfinished build root {partial}")
        shutil.rmtree(partial)
    log = CACHE / f"rootfs-{key}.log"
    say(f"building the chroot {root} (kernel {versions['kernel_abi']}, OpenZFS {versions['zfs_version']}; ~7 min)")
    say(f"its log: {log}")
    started = time.monotonic()
    argv = [
        "bash",
        str(ROOTFS_SCRIPT),
        str(partial),
        mirror,
        security,
        versions["kernel_abi"],
        versions["kernel_version"],
        versions["zfs_version"],
    ]
    try:
        with log.open("wb") as out, local_runner().stream(argv, stdout=out, timeout=3600):
            pass
    except ExternalCommandError as exc:
        tail = log.read_bytes()[-4000:].decode(errors="replace")
        raise SystemExit(f"openzfs-vm: building the chroot failed: {exc}\n--- end of {log}:\n{tail}") from exc
    (partial / ".bulwark-complete").write_text(json.dumps(versions))
    partial.rename(root)
    say(f"chroot built in {time.monotonic() - started:.0f} s")
    for old in CACHE.glob("rootfs-*"):  # (each is ~1.5 GB: keep only the current one)
        if old.is_dir() and old != root:
            say(f"removing the old build root {old}")
            shutil.rmtree(old)
    return root


# -- stage 2: the initramfs -----------------------------------------------------------------------------


def in_root(root: Path, *argv: str) -> CommandResult:
    return run(["chroot", str(root), *argv])


def find_in_root(root: Path, name: str) -> str:
    for directory in ("usr/sbin", "usr/bin", "sbin", "bin"):
        if (root / directory / name).exists():
            return f"/{directory}/{name}"
    raise SystemExit(f"openzfs-vm: {name} is not in the build root")


def shared_libraries(root: Path, programs: Sequence[str]) -> set[str]:
    """Every library the programs load, as ``ldd`` in the chroot names them (the loader included)."""
    libs: set[str] = set()
    for program in programs:
        for line in in_root(root, "ldd", program).out.splitlines():
            m = re.match(r"\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
            if m:
                libs.add(m.group(1))
            elif "linux-vdso" not in line:
                raise SystemExit(f"openzfs-vm: unexpected ldd line for {program}: {line!r}")
    return libs


def module_order(root: Path, abi: str) -> list[str]:
    """The modules to load, dependencies first, as ``modprobe --show-depends`` lists them."""
    out = in_root(root, "modprobe", "-S", abi, "--show-depends", "-a", *MODULES).out
    order: list[str] = []
    for line in out.splitlines():
        fields = line.split()
        if fields[:1] == ["builtin"]:
            continue
        if fields[:1] != ["insmod"] or len(fields) < 2:
            raise SystemExit(f"openzfs-vm: unexpected modprobe line: {line!r}")
        if fields[1] not in order:
            order.append(fields[1])
    if not any(Path(m).name.startswith("zfs.ko") for m in order):
        raise SystemExit(f"openzfs-vm: zfs.ko is not among the modules for {abi}: {order}")
    return order


def copy_file(src: Path, dest: Path, mode: int | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)  # (follows symlinks: the library's content under the name the loader asks for)
    os.chmod(dest, mode if mode is not None else stat.S_IMODE(src.stat().st_mode))


def assemble(root: Path, abi: str, tree: Path) -> None:
    """The initramfs tree: a merged-/usr layout like Debian's."""
    for directory in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "proc", "sys", "dev", "run", "tmp", "root"):
        (tree / directory).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        (tree / link).symlink_to(f"usr/{link}")
    os.chmod(tree / "tmp", 0o1777)  # noqa: S103 - /tmp of the guest
    (tree / "etc/mtab").symlink_to("/proc/self/mounts")
    (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (tree / "etc/group").write_text("root:x:0:\n")

    copy_file(BUSYBOX, tree / "usr/bin/busybox", 0o755)
    for applet in run([str(BUSYBOX), "--list-full"]).out.split():
        path = tree / applet
        if not path.exists() and not path.is_symlink():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to("/usr/bin/busybox")

    programs = [find_in_root(root, name) for name in PROGRAMS]
    for program in programs:
        copy_file(root / program.lstrip("/"), tree / "usr/sbin" / Path(program).name, 0o755)
    libs = shared_libraries(root, programs)
    libs.add("/lib/x86_64-linux-gnu/libgcc_s.so.1")  # (dlopen'ed by pthread_cancel: zfs send aborts without it)
    for lib in sorted(libs):
        copy_file(root / lib.lstrip("/"), tree / lib.lstrip("/"))

    order = module_order(root, abi)
    lines = []
    for module in order:
        source = root / module.lstrip("/")
        dest = tree / module.lstrip("/")
        if module.endswith(".xz") or module.endswith(".zst"):
            raise SystemExit(f"openzfs-vm: compressed module {module}: busybox insmod cannot load it")
        copy_file(source, dest, 0o644)
        params = MODULE_PARAMS.get(Path(module).name.removesuffix(".ko"), "")
        lines.append(f"{module} {params}".strip())
    (tree / "etc/bulwark-vm").mkdir()
    (tree / "etc/bulwark-vm/modules").write_text("\n".join(lines) + "\n")

    agent = tree / "usr/sbin/bulwark-vm-agent"
    run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-s", "-o", str(agent), str(HERE / "agent.c")])
    copy_file(HERE / "init", tree / "init", 0o755)


def cpio_entries(tree: Path) -> Iterator[tuple[str, Path]]:
    yield ".", tree
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            yield str(path.relative_to(tree)), path


def write_cpio(tree: Path, out: Path) -> None:
    """A gzip'ed newc cpio archive of ``tree`` with root ownership and zero times (reproducible), plus
    /dev/console (the kernel opens it before /init runs; no mknod needed here)."""
    ino = 0

    def header(name: str, mode: int, size: int, rdev: tuple[int, int] = (0, 0), nlink: int = 1) -> bytes:
        nonlocal ino
        ino += 1
        fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + name.encode() + b"\0"
        return head + b"\0" * (-len(head) % 4)

    def pad(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    with gzip.open(out, "wb", compresslevel=6) as gz:
        for name, path in cpio_entries(tree):
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(path).encode()
                gz.write(header(name, stat.S_IFLNK | 0o777, len(target)) + pad(target))
            elif stat.S_ISDIR(st.st_mode):
                gz.write(header(name, stat.S_IFDIR | stat.S_IMODE(st.st_mode), 0, nlink=2))
            else:
                data = path.read_bytes()
                gz.write(header(name, stat.S_IFREG | stat.S_IMODE(st.st_mode), len(data)) + pad(data))
        gz.write(header("dev/console", stat.S_IFCHR | 0o600, 0, rdev=(5, 1)))
        gz.write(header("TRAILER!!!", 0, 0))


def verify(artifacts: Path) -> dict[str, object]:
    """Boot the new machine once: the agent answers, ``zfs version`` matches, a pool can be made."""
    from appliance.system.vm import OpenZfsVm

    work = CACHE / "verify"
    shutil.rmtree(work, ignore_errors=True)
    vm = OpenZfsVm(artifacts, work, disks=1)
    started = time.monotonic()
    runner = vm.start()
    try:
        booted = time.monotonic() - started
        version = runner.run(["zfs", "version"]).out.split()
        runner.run(["zpool", "create", "-f", "verify", vm.disk_paths[0]])
        runner.run(["zpool", "destroy", "verify"])
        return {"boot_seconds": round(booted, 1), "userland": version[0], "kernel": version[1]}
    finally:
        vm.stop()
        shutil.rmtree(work, ignore_errors=True)


def vm_key(root_key: str) -> str:
    return digest(root_key.encode(), *(p.read_bytes() for p in VM_FILES), json.dumps(host_versions()).encode())


def build_vm(key: str, root_key: str, root: Path, versions: dict[str, str], check: bool) -> Path:
    artifacts = CACHE / f"vm-{key}"
    started = time.monotonic()
    partial = CACHE / f"vm-{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    tree = partial / "tree"
    tree.mkdir(parents=True)
    say("assembling the initramfs")
    abi = versions["kernel_abi"]
    assemble(root, abi, tree)
    write_cpio(tree, partial / "initrd.img")
    shutil.rmtree(tree)
    copy_file(root / f"boot/vmlinuz-{abi}", partial / "vmlinuz", 0o644)
    manifest: dict[str, object] = {
        "key": key,
        "rootfs_key": root_key,
        "files_hash": vm_files_hash(),
        "versions": versions,
        "host": host_versions(),
        "built_at": time.time(),
        "initrd_bytes": (partial / "initrd.img").stat().st_size,
    }
    if check:
        say("booting it once to check it")
        manifest["verified"] = verify(partial)
        say(f"checked: {manifest['verified']}")
    manifest["build_seconds"] = round(time.monotonic() - started, 1)
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(artifacts)
    built = sorted((p for p in CACHE.glob("vm-*") if (p / "manifest.json").exists()), key=lambda p: p.stat().st_mtime)
    for old in built[:-KEEP_BUILDS]:  # (other checkouts may share the cache: keep a few)
        shutil.rmtree(old)
    return artifacts


def find_cached() -> Path | None:
    """The newest artifacts built from these very build files (the package versions are not checked)."""
    wanted = vm_files_hash()
    best: tuple[float, Path] | None = None
    for manifest in CACHE.glob("vm-*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if data.get("files_hash") == wanted and (best is None or data.get("built_at", 0) > best[0]):
            best = (float(data.get("built_at", 0)), manifest.parent)
    return best[1] if best else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--find", action="store_true", help="only print the cached artifacts (no network)")
    parser.add_argument("--no-verify", action="store_true", help="do not boot a new build once to check it")
    args = parser.parse_args(argv)
    if args.find:
        found = find_cached()
        if found is None:
            return 1
        print(found)
        return 0
    if os.geteuid() != 0:
        raise SystemExit("openzfs-vm: building needs root (debootstrap, chroot)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        # (one build at a time: another one waits here, then finds what the first one made)
        fcntl.flock(lock, fcntl.LOCK_EX)
        artifacts = build(not args.no_verify)
    print(artifacts)
    return 0


def build(check: bool) -> Path:
    """The artifacts for the package versions the mirror has now: cached, or built."""
    started = time.monotonic()
    mirror, security = host_mirrors()
    try:
        versions = resolve_versions(mirror, security)
    except CommandFailed as exc:
        found = find_cached()
        if found is None:
            raise SystemExit(
                f"openzfs-vm: cannot reach the Debian mirror {mirror} and nothing is cached: {exc}"
            ) from exc
        say(f"WARNING: cannot reach the Debian mirror ({exc.stderr.strip()[-200:]}); using the cached {found}")
        return found
    say(f"kernel {versions['kernel_abi']} {versions['kernel_version']}, OpenZFS {versions['zfs_version']}")
    root_key = digest(ROOTFS_SCRIPT.read_bytes(), json.dumps(versions, sort_keys=True).encode())
    key = vm_key(root_key)
    artifacts = CACHE / f"vm-{key}"
    if (artifacts / "manifest.json").exists():
        say(f"cached machine {artifacts}")
    else:
        root = ensure_rootfs(root_key, mirror, security, versions)
        artifacts = build_vm(key, root_key, root, versions, check)
    say(f"ready in {time.monotonic() - started:.0f} s: {artifacts}")
    return artifacts


if __name__ == "__main__":
    sys.exit(main())
