"""The files area of an agent client on a real directory: commits that touch only what changed, deltas checked
against the previous version and written in place, and the careful path after an interrupted commit."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import blake3
import pytest

from appliance.ingest import delta, manifest
from appliance.ingest.errors import ContentMismatch, ProtocolError
from appliance.ingest.files import Area
from appliance.ingest.manifest import Entry

MiB = 1024 * 1024
T0 = 1_700_000_000 * 10**9


def d(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, "d", mode, os.getuid(), os.getgid(), T0)


def f(path: str, data: bytes, mtime: int = T0, mode: int = 0o644, blocks: bool = False) -> Entry:
    hexes = "".join(blake3.blake3(data[i : i + MiB]).hexdigest()[:32] for i in range(0, len(data), MiB))
    return Entry(path, "f", mode, os.getuid(), os.getgid(), mtime, len(data), h(data), blocks=hexes if blocks else "")


def h(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def stage(area: Area, *contents: bytes) -> None:
    body = b"".join(h(c).encode() + len(c).to_bytes(8, "big") + c for c in contents)
    area.receive_pack(body, "")


def commit(area: Area, entries: list[Entry]) -> list[str]:
    entries = sorted(entries, key=lambda e: e.path)
    base = area.load_manifest()
    missing = area.gather(entries, base)
    if not missing:
        area.apply(entries, base)
        area.finish(entries)
    return missing


def delta_body(blocks: dict[int, bytes]) -> bytes:
    return b"".join(i.to_bytes(8, "big") + len(b).to_bytes(4, "big") + b for i, b in sorted(blocks.items()))


@pytest.fixture
def area(tmp_path: Path) -> Area:
    (tmp_path / "ds").mkdir()
    return Area(tmp_path / "ds")


def test_a_second_commit_leaves_unchanged_files_alone(area: Area) -> None:
    a, b = b"alpha\n" * 100, b"beta\n" * 50
    first = [d("docs"), f("docs/a.txt", a), f("docs/b.txt", b, mode=0o600)]
    stage(area, a, b)
    assert commit(area, first) == []
    assert (area.root / "docs/a.txt").read_bytes() == a
    assert oct((area.root / "docs/b.txt").stat().st_mode & 0o7777) == oct(0o600)
    assert not area.applying.exists() and os.listdir(area.staging) == []
    before = os.stat(area.root / "docs/a.txt")

    c = b"gamma\n"
    second = [d("docs"), f("docs/a.txt", a), f("docs/c.txt", c, mtime=T0 + 10**9)]  # b deleted, c new
    stage(area, c)
    assert commit(area, second) == []
    after = os.stat(area.root / "docs/a.txt")
    assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)  # not even a chmod
    assert sorted(os.listdir(area.root / "docs")) == ["a.txt", "c.txt"]
    assert [e.path for e in area.load_manifest()] == ["docs", "docs/a.txt", "docs/c.txt"]


def test_renamed_and_copied_content_is_taken_from_the_tree_verified(area: Area) -> None:
    a = os.urandom(5000)
    stage(area, a)
    assert commit(area, [d("x"), f("x/a", a)]) == []
    assert commit(area, [d("y"), f("y/moved", a), f("y/copy", a)]) == []
    assert (area.root / "y/moved").read_bytes() == a and (area.root / "y/copy").read_bytes() == a
    assert not (area.root / "x").exists()


def test_content_that_never_arrived_is_missing_and_nothing_changes(area: Area) -> None:
    a = b"kept\n"
    stage(area, a)
    commit(area, [f("a", a)])
    ghost = b"never sent"
    assert commit(area, [f("a", a), f("b", ghost)]) == [h(ghost)]
    assert sorted(os.listdir(area.root)) == [".bulwark", "a"]


def test_an_interrupted_commit_is_done_again_with_everything_checked(
    area: Area, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = b"first file\n" * 10, b"second file\n" * 10
    stage(area, a, b)
    commit(area, [f("a", a), f("b", b)])
    a2, b2 = b"first FILE\n" * 10, b"second, edited\n" * 10  # a2: same size and mtime as a, other bytes
    stage(area, a2, b2)
    entries = sorted([f("a", a2), f("b", b2, mtime=T0 + 10**9)], key=lambda e: e.path)
    real_utime = os.utime
    calls = []

    def crash_on_second(*args: Any, **kwargs: Any) -> None:  # the second file written, its mtime not set yet
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("power cut")
        real_utime(*args, **kwargs)

    monkeypatch.setattr(os, "utime", crash_on_second)
    base = area.load_manifest()
    assert area.gather(entries, base) == []
    with pytest.raises(OSError, match="power cut"):
        area.apply(entries, base)
    monkeypatch.setattr(os, "utime", real_utime)
    assert area.applying.exists() and area.recovering()
    # The next job goes back to the old content of a. The tree holds a2 there, with a's size and mtime: only
    # hashing it shows it is not a, which the careful path after an interrupted commit does.
    stage(area, a)
    assert commit(area, [f("a", a), f("b", b2, mtime=T0 + 10**9)]) == []
    assert (area.root / "a").read_bytes() == a and (area.root / "b").read_bytes() == b2
    assert not area.applying.exists()


def test_a_delta_is_checked_on_arrival_and_written_in_place_at_the_commit(area: Area) -> None:
    old = os.urandom(3 * MiB + 100)
    area.receive(h(old), 0, len(old), True, _stream(old), "")
    commit(area, [f("vm.img", old, blocks=True)])
    ino = os.stat(area.root / "vm.img").st_ino
    new = bytearray(old) + os.urandom(MiB)  # grows by a block, and its second block changes
    new[MiB + 5 : MiB + 9] = b"EDIT"
    changed = {1: bytes(new[MiB : 2 * MiB]), 3: bytes(new[3 * MiB : 4 * MiB]), 4: bytes(new[4 * MiB :])}
    base = area.load_manifest()[0]
    with pytest.raises(ContentMismatch, match="rebuilt from the delta"):
        area.receive_delta(h(bytes(new)), len(new), base, delta_body({1: changed[1]}), "")
    assert os.listdir(area.staging) == []
    area.receive_delta(h(bytes(new)), len(new), base, delta_body(changed), "")
    assert (area.root / "vm.img").read_bytes() == old  # nothing written before the commit
    assert commit(area, [f("vm.img", bytes(new), mtime=T0 + 10**9, blocks=True)]) == []
    assert (area.root / "vm.img").read_bytes() == bytes(new)
    assert os.stat(area.root / "vm.img").st_ino == ino  # in place, not a copy


def test_a_delta_over_a_previous_version_that_changed_is_not_used(area: Area) -> None:
    old = os.urandom(2 * MiB)
    area.receive(h(old), 0, len(old), True, _stream(old), "")
    commit(area, [f("db", old, blocks=True)])
    new = os.urandom(MiB) + old[MiB:]
    area.receive_delta(h(new), len(new), area.load_manifest()[0], delta_body({0: new[:MiB]}), "")
    os.utime(area.root / "db", ns=(T0 + 5 * 10**9, T0 + 5 * 10**9))  # the tree is not what the delta was made on
    assert commit(area, [f("db", new, mtime=T0 + 10**9)]) == [h(new)]
    assert (area.root / "db").read_bytes() == old


def test_writing_a_delta_twice_gives_the_same_file(tmp_path: Path) -> None:
    """A commit interrupted while writing a delta is done again over the half-written file."""
    old = os.urandom(2 * MiB + 10)
    new_tail = os.urandom(MiB // 2)
    blocks = delta.parse(delta_body({2: new_tail}), 2 * MiB + len(new_tail))
    path = tmp_path / "file"
    path.write_bytes(old)
    want = delta.overlay_hash(path, len(old), blocks, 2 * MiB + len(new_tail))
    change = delta.Delta("file", h(old), 2 * MiB + len(new_tail), blocks)
    delta.write_in_place(path, change)
    delta.write_in_place(path, change)
    assert h(path.read_bytes()) == want == h(old[: 2 * MiB] + new_tail)


def raw(index: int, data: bytes, length: int | None = None) -> bytes:
    return index.to_bytes(8, "big") + (len(data) if length is None else length).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (raw(5, b"x"), "outside the file"),
        (raw(1, b"a") + raw(0, b"b"), "increasing order"),
        (raw(0, b"ab", length=9), "malformed"),
        (b"\x00" * 5, "cut short"),
    ],
)
def test_malformed_deltas_are_refused(body: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        delta.parse(body, 2 * MiB)


def test_a_stored_manifest_reads_back_as_written(area: Area) -> None:
    a = b"x"
    stage(area, a)
    entries = [d("a"), f("a/b", a), Entry("a/l", "l", 0o777, 0, 0, T0, target="b")]
    commit(area, entries)
    assert area.load_manifest() == manifest.parse(manifest.to_json(sorted(entries, key=lambda e: e.path)))


def _stream(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def test_modes_come_out_as_the_manifest_says_whatever_the_umask(area: Area) -> None:
    a, b = b"plain\n", b"secret\n"
    old = os.umask(0o077)
    try:
        stage(area, a, b)
    finally:
        os.umask(old)
    assert commit(area, [f("a", a), f("b", b, mode=0o600), f("c", a, mode=0o755)]) == []
    modes = {n: oct(os.stat(area.root / n).st_mode & 0o7777) for n in "abc"}
    assert modes == {"a": oct(0o644), "b": oct(0o600), "c": oct(0o755)}


def test_small_contents_wait_in_packs_and_a_damaged_pack_is_asked_for_again(area: Area) -> None:
    a, b = b"small one\n" * 3, b"small two\n" * 5
    stage(area, a, b)
    assert [n for n in os.listdir(area.staging) if n.endswith(".pack")] == os.listdir(area.staging)  # one file
    assert area.have([h(a), h(b)], []) == ([], {})
    (pack,) = os.listdir(area.staging)
    damaged = (area.staging / pack).read_bytes()
    (area.staging / pack).write_bytes(damaged[: len(damaged) - 3])  # cut short: its index promises more
    assert area.have([h(a), h(b)], []) == ([h(a), h(b)], {})
    assert area.gather([f("a", a)], []) == [h(a)]
    (area.staging / pack).write_bytes(b'[["not-a-hash",0,1]]\nx')  # an index that names no content
    assert area.have([h(a)], []) == ([h(a)], {})
    stage(area, a, b)
    assert commit(area, [f("a", a, mode=0o4750), f("b", b, mode=0o600), f("c", a)]) == []
    for name, data, mode in (("a", a, 0o4750), ("b", b, 0o600), ("c", a, 0o644)):
        st = os.lstat(area.root / name)
        assert (area.root / name).read_bytes() == data and stat.S_IMODE(st.st_mode) == mode
        assert st.st_mtime_ns == T0
