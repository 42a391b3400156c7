"""Native encryption on OpenZFS: encrypted datasets and their keys, raw sends kept as ciphertext by a receiver
that has no key, and a restore once the key is loaded. On zfs-fuse every one of these is refused as
unsupported. Keys travel on stdin only; passphrases use 100,000 PBKDF2 iterations to keep tests fast."""

from __future__ import annotations

import os

import pytest

from appliance.system.errors import InvalidInput, Unsupported
from appliance.zfs import datasets, encryption, errors, snapshots, transfer
from appliance.zfs.transfer import SendOptions
from tests.zfs_fixtures import TestPool, only_openzfs, only_zfs_fuse

pytestmark = pytest.mark.zfs
MiB = 1024 * 1024
PASSPHRASE = b"correct horse battery staple"
ITERATIONS = 100_000


@only_zfs_fuse
def test_encryption_needs_openzfs(pool: TestPool) -> None:
    host, name = pool.host, pool.ds("enc")
    for call in (
        lambda: encryption.create(host, name, PASSPHRASE),
        lambda: encryption.load_key(host, name, PASSPHRASE),
        lambda: encryption.unload_key(host, name),
        lambda: encryption.info(host, pool.name),
        lambda: transfer.send_argv(host, f"{name}@s1", SendOptions(raw=True)),
    ):
        with pytest.raises(Unsupported, match="native encryption and raw sends needs OpenZFS"):
            call()
    assert not datasets.exists(host, name)


@only_openzfs
def test_encrypted_datasets_and_their_keys(pool: TestPool) -> None:
    host, name = pool.host, pool.ds("enc")
    made = encryption.create(
        host, name, PASSPHRASE, pbkdf2_iterations=ITERATIONS, props={"compression": "on", "bulwark:client": "acme"}
    )
    assert (made.mounted, made.compression, made.user) == (True, "on", {"bulwark:client": "acme"})
    info = encryption.info(host, name)
    assert info == encryption.EncryptionInfo(name, "aes-256-gcm", "passphrase", "prompt", "available", name, ITERATIONS)
    assert info.encrypted and info.key_loaded
    datasets.create(host, f"{name}/child")  # inherits the encryption and the key of its encryption root
    child = encryption.info(host, f"{name}/child")
    assert (child.encryption_root, child.key_status, child.key_location) == (name, "available", None)
    plain = encryption.info(host, pool.name)
    assert (plain.encrypted, plain.key_status, plain.key_format, plain.encryption_root) == (False, "none", None, None)

    pool.fs.write(pool.path("enc") / "secret", b"plaintext inside")
    datasets.unmount(host, name)
    encryption.unload_key(host, name)
    assert encryption.info(host, f"{name}/child").key_status == "unavailable"
    with pytest.raises(errors.IncorrectKey):
        encryption.load_key(host, name, b"a wrong passphrase")
    encryption.load_key(host, name, PASSPHRASE)
    datasets.mount(host, name)
    assert pool.fs.read(pool.path("enc") / "secret") == b"plaintext inside"

    hex_key, raw_key = os.urandom(32).hex().encode(), os.urandom(32)
    assert (
        encryption.info(host, encryption.create(host, pool.ds("hex"), hex_key, key_format="hex").name).key_format
        == "hex"
    )
    encryption.create(host, pool.ds("raw"), raw_key, key_format="raw")
    datasets.unmount(host, pool.ds("raw"))
    encryption.unload_key(host, pool.ds("raw"))
    encryption.load_key(host, pool.ds("raw"), raw_key)  # (32 bytes, some of them newlines perhaps)
    assert encryption.info(host, pool.ds("raw")).key_loaded


@only_openzfs
def test_create_encrypted_validates_before_running(pool: TestPool) -> None:
    host = pool.host
    for key, key_format in ((b"short", "passphrase"), (b"two\nlines here", "passphrase"), (b"ab" * 31, "hex")):
        with pytest.raises(InvalidInput):
            encryption.create(host, pool.ds("bad"), key, key_format=key_format)
    with pytest.raises(InvalidInput):
        encryption.create(host, pool.ds("bad"), os.urandom(31), key_format="raw")
    with pytest.raises(InvalidInput):
        encryption.create(host, pool.ds("bad"), PASSPHRASE, key_format="pem")
    with pytest.raises(InvalidInput):  # the key's location is always stdin, never a file named by a caller
        encryption.create(host, pool.ds("bad"), PASSPHRASE, props={"keylocation": "file:///etc/shadow"})
    with pytest.raises(InvalidInput):
        encryption.create(host, pool.ds("bad"), PASSPHRASE, pbkdf2_iterations=1000)
    assert not datasets.exists(host, pool.ds("bad"))


@only_openzfs
def test_raw_send_to_a_receiver_without_the_key_then_restore(pool: TestPool) -> None:
    """The offsite copy: ciphertext only, received and updated incrementally while its key is not loaded;
    then a restore once the key is loaded, and a raw send back."""
    host, src = pool.host, pool.ds("enc")
    encryption.create(host, src, PASSPHRASE, pbkdf2_iterations=ITERATIONS, props={"compression": "off"})
    pool.fs.write_random(pool.path("enc") / "a", 1 * MiB)
    snapshots.create(host, src, "s1")
    datasets.create(host, pool.ds("offsite"))
    copy = pool.ds("offsite/enc")

    transfer.replicate(host, f"{src}@s1", copy, SendOptions(raw=True))
    received = encryption.info(host, copy)
    assert (received.encrypted, received.key_status, received.encryption_root) == (True, "unavailable", copy)
    assert datasets.get_dataset(host, copy).mounted is False
    with pytest.raises(errors.EncryptionKeyNotLoaded):
        datasets.mount(host, copy)

    pool.fs.write(pool.path("enc") / "b", b"written after the first send")
    snapshots.create(host, src, "s2")
    transfer.replicate(host, f"{src}@s2", copy, SendOptions(raw=True, incremental_from=f"{src}@s1"))
    assert [s.snapname for s in snapshots.list_snapshots(host, copy)] == ["s1", "s2"]
    assert encryption.info(host, copy).key_status == "unavailable"  # still only ciphertext here
    with pytest.raises(errors.EncryptionKeyNotLoaded):  # a plain (decrypting) send needs the key
        transfer.replicate(host, f"{copy}@s2", pool.ds("plain"))

    # restore: load the key on the copy, and it reads as the source did
    with pytest.raises(errors.IncorrectKey):
        encryption.load_key(host, copy, b"not the source's passphrase")
    encryption.load_key(host, copy, PASSPHRASE)
    datasets.mount(host, copy)
    assert pool.fs.read(pool.path("offsite/enc") / "b") == b"written after the first send"
    assert pool.snapshot_files(f"{copy}@s2") == pool.snapshot_files(f"{src}@s2")

    # and a raw send back to a new dataset, whose key is loaded afterwards
    transfer.replicate(host, f"{copy}@s2", pool.ds("restored"), SendOptions(raw=True))
    encryption.load_key(host, pool.ds("restored"), PASSPHRASE)
    assert pool.snapshot_files(pool.ds("restored@s2")) == pool.snapshot_files(f"{src}@s2")
