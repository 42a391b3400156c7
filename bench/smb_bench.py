"""SMB write throughput into a Bulwark client share against a plain share on the same smbd.

Run as root with zfs-fuse answering: ``.venv/bin/python bench/smb_bench.py [--mib 512] [--runs 3]``. It makes a
pool on a sparse file in a temporary directory, a client of kind ``smb`` through the same functions the appliance
uses (its dataset, quota, Unix account and tdbsam entry, smb.conf checked by testparm, Previous Versions), adds
a plain share (a directory on the same pool, default options, same account) to that smb.conf, starts smbd on a
loopback port, and times ``smbclient put`` of the same incompressible file into each share, alternately, best of
``--runs``. It also times a raw local write of the file into the pool for scale. The ratio client/plain is what
Bulwark's share configuration (mandatory signing, strict sync, shadow_copy2, masks) costs. Everything it made
(pool, accounts, smbd) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

from appliance.clients import service
from appliance.clients.model import ClientSettings
from appliance.samba import accounts, server, shares
from appliance.store import Store
from appliance.system import settings
from appliance.system.runner import local_runner
from appliance.system.settings import ApplianceSettings, PoolConfig
from appliance.zfs.host import ZfsHost

MiB = 1024 * 1024
PASSWORD = "bench-password-" + secrets.token_hex(8)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def put(port: int, share: str, auth: Path, local: Path, remote: str) -> float:
    start = time.perf_counter()
    local_runner().run(
        ["smbclient", f"//127.0.0.1/{share}", "-p", str(port), "-A", str(auth), "-m", "SMB3",
         "-c", f"put {local} {remote}"],
        timeout=600,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512, help="size of the file in MiB (default 512)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runner = local_runner()
    zfs = ZfsHost.detect(runner)
    with tempfile.TemporaryDirectory(prefix="bulwark-smb-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # noqa: S103 - smbd runs as the client account below it
        pool = f"bwb{secrets.token_hex(3)}"
        device = work / "dev.img"
        with device.open("wb") as fh:
            fh.truncate((4 * args.mib + 2048) * MiB)
        mnt = work / "mnt"
        zfs.zpool("create", "-o", "cachefile=none", "-m", str(mnt), pool, str(device))
        store = Store.open(work / "bulwark.db")
        prefix = f"{pool}-"
        smbd = None
        try:
            settings.save(
                store,
                ApplianceSettings(
                    pool=PoolConfig(name=pool, layout="file", mountpoint=str(mnt)), initialized_at=time.time()
                ),
            )
            shares.update_settings(
                store, None, runner, by="bench", port=free_port(), interfaces=["127.0.0.1"], account_prefix=prefix
            )
            service.ensure_clients_root(store, zfs)
            service.create_client(store, zfs, "bench", ClientSettings.build(kind="smb", schedule="off"), by="bench")
            shares.set_password(store, zfs, runner, "bench", PASSWORD, by="bench")
            account = accounts.account_name("bench", prefix)
            layout = shares.layout(store)
            plain = mnt / "clients" / "plain"
            plain.mkdir()
            os.chown(plain, accounts.ensure_unix(runner, account), -1)
            text = shares.config_text(store, zfs)
            text += f"\n[plain]\n\tpath = {plain}\n\tvalid users = {account}\n\tread only = no\n"
            server.install(runner, layout, text)
            smbd = server.Smbd(runner, layout, work / "smbd.log")
            smbd.start()
            auth = work / "auth"
            auth.write_text(f"username = {account}\npassword = {PASSWORD}\n")
            auth.chmod(0o600)
            data = work / "payload.bin"
            with data.open("wb") as fh:
                for _ in range(args.mib):
                    fh.write(os.urandom(MiB))
            put(layout.port, "plain", auth, data, "warm.bin")  # caches and the connection path warm
            client_t, plain_t, raw_t = [], [], []
            for i in range(args.runs):
                client_t.append(put(layout.port, "bench", auth, data, f"run{i}.bin"))
                plain_t.append(put(layout.port, "plain", auth, data, f"run{i}.bin"))
                start = time.perf_counter()
                with data.open("rb") as src, (plain / f"raw{i}.bin").open("wb") as dst:
                    while chunk := src.read(4 * MiB):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
                raw_t.append(time.perf_counter() - start)
                for written in (mnt / "clients" / "bench" / "share" / f"run{i}.bin", plain / f"run{i}.bin",
                                plain / f"raw{i}.bin"):  # fmt: skip
                    written.unlink()  # the pool holds one run's files at a time
            c, p, r = min(client_t), min(plain_t), min(raw_t)
            rate = args.mib
            print(f"file: {args.mib} MiB incompressible, best of {args.runs}, smbclient put -m SMB3 over loopback")
            print(f"  client share (Bulwark's configuration): {rate / c:7.1f} MiB/s")
            print(f"  plain share (defaults, same smbd/pool):  {rate / p:7.1f} MiB/s")
            print(f"  raw local write + fsync into the pool:   {rate / r:7.1f} MiB/s")
            print(
                f"ratio client/plain throughput: {p / c:.3f}  (cost of our configuration: {100 * (c / p - 1):+.1f} %)"
            )
            print(f"ratio client SMB/raw write:    {r / c:.3f}")
        finally:
            if smbd is not None:
                smbd.stop()
            for line in Path("/etc/passwd").read_text().splitlines():
                if line.startswith(prefix):
                    runner.run(["userdel", line.split(":", 1)[0]], ok_codes=range(256))
            store.close()
            for attempt in range(40):
                if runner.run(["zpool", "destroy", "-f", pool], ok_codes=range(256)).returncode == 0:
                    break
                time.sleep(0.05 * (attempt + 1))


if __name__ == "__main__":
    main()
