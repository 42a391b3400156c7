"""Envelopes: the framing and cryptography of every offsite chunk and manifest (docs/offsite-format.md §3–4).

An envelope is a 52-byte header — magic, version, type, flags, compression, key id, owner id, index, nonce —
followed by AES-256-GCM ciphertext and tag of the payload, with the whole header as associated data. The key is
derived per stream (or chain) from the data key with HKDF-SHA256, so a chunk cannot be opened under any other
stream's key, and its header names the stream and position it belongs to.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.offsite.errors import KeyMissing, Tampered, UnsupportedVersion

MAGIC = b"BWOE"
VERSION = 1
CHUNK, STREAM_MANIFEST, CHAIN_MANIFEST = 1, 2, 3
TYPE_NAMES = {CHUNK: "chunk", STREAM_MANIFEST: "stream manifest", CHAIN_MANIFEST: "chain manifest"}
FLAG_LAST = 0x01
NONE, ZSTD = 0, 1
HEADER = struct.Struct(">4sBBBB8s16sQ12s")
HEADER_SIZE = HEADER.size  # 52
TAG_SIZE = 16
ID_SIZE = 16
KEY_ID_SIZE = 8
MANIFEST_LIMIT = 64 * 1024 * 1024
ZSTD_LEVEL = 1
assert HEADER_SIZE == 52


def derive(data_key: bytes, purpose: str, owner: bytes) -> bytes:
    """HKDF-SHA256 subkey of ``data_key`` for ``purpose`` ('stream', 'chain' or 'journal') of ``owner``."""
    info = b"bulwark-offsite v1 " + purpose.encode() + owner
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


def owner_key(data_key: bytes, kind: int, owner: bytes) -> bytes:
    return derive(data_key, "chain" if kind == CHAIN_MANIFEST else "stream", owner)


@dataclass(frozen=True)
class Header:
    kind: int
    flags: int
    compression: int
    key_id: bytes
    owner: bytes
    index: int
    nonce: bytes

    def pack(self) -> bytes:
        return HEADER.pack(
            MAGIC, VERSION, self.kind, self.flags, self.compression, self.key_id, self.owner, self.index, self.nonce
        )

    @property
    def last(self) -> bool:
        return bool(self.flags & FLAG_LAST)


@dataclass(frozen=True)
class Opened:
    header: Header
    payload: bytes
    tag: bytes


def parse_header(name: str, blob: bytes) -> Header:
    """The header of an envelope, checked for shape only (nothing is authenticated yet)."""
    if len(blob) < HEADER_SIZE + TAG_SIZE:
        raise Tampered(name, f"{len(blob)} bytes is too short for an envelope")
    magic, version, kind, flags, compression, key_id, owner, index, nonce = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise Tampered(name, "not a Bulwark offsite envelope (bad magic)")
    if version != VERSION:
        raise UnsupportedVersion(name, version)
    if kind not in TYPE_NAMES:
        raise Tampered(name, f"unknown object type {kind}")
    if flags & ~FLAG_LAST or (flags and kind != CHUNK):
        raise Tampered(name, f"unknown flags {flags:#04x}")
    if compression not in (NONE, ZSTD):
        raise Tampered(name, f"unknown compression {compression}")
    return Header(kind, flags, compression, key_id, owner, index, nonce)


class Sealer:
    """Encrypts the envelopes of one owner (a stream or a chain) under its derived key."""

    def __init__(self, data_key: bytes, key_id: bytes, kind: int, owner: bytes) -> None:
        if len(key_id) != KEY_ID_SIZE or len(owner) != ID_SIZE:
            raise ValueError("key id must be 8 bytes and owner id 16 bytes")
        self._aead = AESGCM(owner_key(data_key, kind, owner))
        self._local = threading.local()  # zstd contexts are not thread-safe: one per sealing thread
        self.key_id = key_id
        self.kind = kind
        self.owner = owner

    def seal(self, payload: bytes, index: int, *, last: bool = False, compress: bool = True) -> tuple[bytearray, bytes]:
        """The envelope of ``payload`` at ``index``, and its 16-byte GCM tag."""
        compression, body = self._compress(payload, compress)
        out = bytearray(HEADER_SIZE + len(body) + TAG_SIZE)  # one buffer: no copy of the ciphertext after it
        with memoryview(out) as view:
            tag = self._encrypt(body, compression, index, last, view)
        return out, tag

    def seal_into(
        self, payload: bytes | memoryview, index: int, out: bytearray, *, last: bool = False
    ) -> tuple[memoryview, bytes]:
        """:meth:`seal` into ``out`` (at least ``sealed_size(len(payload))`` bytes, reused by the caller): a view
        of the envelope at the start of ``out``, and its tag."""
        compression, body = self._compress(payload, True)
        view = memoryview(out)[: HEADER_SIZE + len(body) + TAG_SIZE]
        if len(view) != HEADER_SIZE + len(body) + TAG_SIZE:
            view.release()
            raise ValueError("the output buffer is too small for the envelope")
        return view, self._encrypt(body, compression, index, last, view)

    def _compress(self, payload: bytes | memoryview, compress: bool) -> tuple[int, bytes | memoryview]:
        """zstd level 1 as one frame, or the payload itself when that is not smaller."""
        if compress:
            compressor = getattr(self._local, "zstd", None)
            if compressor is None:
                compressor = self._local.zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            packed = compressor.compress(payload)
            if len(packed) < len(payload):
                return ZSTD, packed
        return NONE, payload

    def _encrypt(self, body: bytes | memoryview, compression: int, index: int, last: bool, out: memoryview) -> bytes:
        """Write the header and the ciphertext of ``body`` into ``out`` (exactly their size); the tag."""
        header = Header(
            self.kind, FLAG_LAST if last else 0, compression, self.key_id, self.owner, index, os.urandom(12)
        )
        head = header.pack()
        out[:HEADER_SIZE] = head
        self._aead.encrypt_into(header.nonce, body, head, out[HEADER_SIZE:])
        return bytes(out[-TAG_SIZE:])


def sealed_size(payload_size: int) -> int:
    """The largest envelope of a payload of ``payload_size`` bytes (stored uncompressed when zstd gains nothing)."""
    return HEADER_SIZE + payload_size + TAG_SIZE


class Opener:
    """Checks and decrypts the envelopes of one owner. ``keys`` maps key ids to data keys."""

    def __init__(self, keys: dict[bytes, bytes], kind: int, owner: bytes, *, limit: int) -> None:
        self._keys = keys
        self._aeads: dict[bytes, AESGCM] = {}
        self.kind = kind
        self.owner = owner
        self.limit = limit
        self._local = threading.local()

    def open(self, name: str, blob: bytes, index: int) -> Opened:
        header = parse_header(name, blob)
        what = TYPE_NAMES[self.kind]
        if header.kind != self.kind:
            raise Tampered(name, f"is a {TYPE_NAMES[header.kind]} where a {what} belongs")
        if header.owner != self.owner:
            raise Tampered(name, f"belongs to {header.owner.hex()}, not {self.owner.hex()} (spliced from elsewhere)")
        if header.index != index:
            raise Tampered(name, f"carries position {header.index} but is read at position {index} (reordered)")
        aead = self._aeads.get(header.key_id)
        if aead is None:
            data_key = self._keys.get(header.key_id)
            if data_key is None:
                raise KeyMissing(name, header.key_id.hex())
            aead = self._aeads[header.key_id] = AESGCM(owner_key(data_key, self.kind, self.owner))
        head = blob[:HEADER_SIZE]
        try:
            body = aead.decrypt(header.nonce, blob[HEADER_SIZE:], head)
        except InvalidTag:
            raise Tampered(name, "its authentication tag does not match (changed bytes, or the wrong key)") from None
        if header.compression == ZSTD:
            payload = self._decompress(name, body)
        else:
            payload = body
        return Opened(header, payload, blob[-TAG_SIZE:])

    def _decompress(self, name: str, body: bytes) -> bytes:
        decompressor = getattr(self._local, "zstd", None)
        if decompressor is None:
            decompressor = self._local.zstd = zstandard.ZstdDecompressor()
        try:
            size = zstandard.frame_content_size(body)
            if size > self.limit:
                raise Tampered(name, f"decompresses to {size} bytes, more than {self.limit}")
            if size >= 0:
                payload = decompressor.decompress(body)
            else:  # no size in the frame: read at most one byte past the limit
                with decompressor.stream_reader(body) as reader:
                    payload = reader.read(self.limit + 1)
        except zstandard.ZstdError as exc:
            raise Tampered(name, f"authentic but does not decompress: {exc}") from None
        if len(payload) > self.limit:
            raise Tampered(name, f"decompresses to more than {self.limit} bytes")
        return payload
