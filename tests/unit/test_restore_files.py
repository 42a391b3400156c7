"""Downloads and restores on plain directories: path safety, the streamed zip, restoring into live data."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from appliance.clients import download, restore
from appliance.clients.errors import PathNotFound, UnsafePath
from appliance.clients.paths import clean_relative, parent_inside, resolve_inside

MiB = 1024 * 1024


@pytest.fixture
def point(tmp_path: Path) -> Path:
    """A tree as a recovery point holds it, with symlinks inside and out."""
    root = tmp_path / "point"
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "docs" / "a.txt").write_text("alpha")
    (root / "docs" / "sub" / "big.bin").write_bytes(os.urandom(3 * MiB + 17))
    (root / "top.txt").write_text("top")
    os.symlink("../a.txt", root / "docs" / "sub" / "inside-link")
    os.symlink("/etc", root / "escape")
    os.symlink("../../../../../../etc/passwd", root / "docs" / "passwd-link")
    os.mkfifo(root / "fifo")
    os.utime(root / "docs" / "a.txt", (1_600_000_000, 1_600_000_000))
    return root


@pytest.mark.parametrize(
    ("raw", "clean"), [("", ""), (".", ""), ("a/b", "a/b"), ("a//./b/", "a/b"), ("./x", "x"), ("a b/ü", "a b/ü")]
)
def test_clean_relative(raw: str, clean: str) -> None:
    assert clean_relative(raw) == clean


@pytest.mark.parametrize("raw", ["/etc", "..", "a/../b", "a/..", "../../x", "a\0b", "x" * 5000])
def test_unsafe_paths(raw: str) -> None:
    with pytest.raises(UnsafePath):
        clean_relative(raw)


def test_symlinks_never_lead_out(point: Path) -> None:
    assert resolve_inside(point, "docs/sub/inside-link") == (point / "docs" / "a.txt").resolve()
    for rel in ("escape", "escape/passwd", "docs/passwd-link"):
        with pytest.raises(UnsafePath):
            resolve_inside(point, rel)
    assert parent_inside(point, "escape") == Path(os.path.realpath(point)) / "escape"  # the link itself
    with pytest.raises(UnsafePath):
        parent_inside(point, "escape/passwd")
    with pytest.raises(PathNotFound):
        parent_inside(point, "nothing/here")


def _unzip(chunks: list[bytes]) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(chunks)))


def test_zip_of_folders_and_files(point: Path) -> None:
    progress: list[tuple[int, int]] = []
    chunks = list(
        download.zip_stream(point, ["docs", "top.txt", "empty"], on_progress=lambda f, b: progress.append((f, b)))
    )
    assert max(len(c) for c in chunks) <= 2 * MiB  # bounded by the chunk size, whatever the files
    zf = _unzip(chunks)
    assert zf.testzip() is None
    assert sorted(zf.namelist()) == [
        "docs/",
        "docs/a.txt",
        "docs/passwd-link",
        "docs/sub/",
        "docs/sub/big.bin",
        "docs/sub/inside-link",
        "empty/",
        "top.txt",
    ]
    assert zf.read("docs/a.txt") == b"alpha"
    assert zf.read("docs/sub/big.bin") == (point / "docs" / "sub" / "big.bin").read_bytes()
    link = zf.getinfo("docs/passwd-link")
    assert stat.S_ISLNK(link.external_attr >> 16)
    assert zf.read(link) == b"../../../../../../etc/passwd"  # stored as a link, never followed
    assert all(i.flag_bits & 0x08 for i in zf.infolist() if not i.is_dir())  # data descriptors: streamed
    assert progress[-1] == (3, 3 * MiB + 17 + 5 + 3)


def test_zip_of_the_whole_point_and_compression(point: Path) -> None:
    zf = _unzip(list(download.zip_stream(point, [""], compress=True)))
    assert "top.txt" in zf.namelist() and "docs/a.txt" in zf.namelist()
    assert "fifo" not in zf.namelist()  # pipes and devices are left out
    assert zf.getinfo("top.txt").compress_type == zipfile.ZIP_DEFLATED
    assert zf.getinfo("escape").external_attr >> 16 & 0o170000 == stat.S_IFLNK


def test_zip_refuses_traversal(point: Path) -> None:
    for bad in ("../x", "/etc", "escape/passwd"):
        with pytest.raises(UnsafePath):
            list(download.zip_stream(point, [bad]))
    with pytest.raises(PathNotFound):
        list(download.zip_stream(point, ["missing"]))


def test_read_one_file(point: Path) -> None:
    got = download.read_file(point, "docs/sub/big.bin", chunk_size=MiB)
    data = b"".join(got.chunks)
    assert (got.name, got.size, len(data)) == ("big.bin", 3 * MiB + 17, 3 * MiB + 17)
    for rel in ("docs", "escape", "docs/sub/inside-link"):
        with pytest.raises((PathNotFound, UnsafePath)):
            download.read_file(point, rel)


def test_zip_name() -> None:
    assert download.zip_name("acme", "bw-20260126T143400Z-manual", ["docs/Reports 2026"]) == (
        "acme-bw-20260126T143400Z-manual-Reports_2026.zip"
    )
    assert download.zip_name("acme", "s", [""]) == "acme-s.zip"


@pytest.mark.slow
def test_zip64_beyond_4_gib(tmp_path: Path) -> None:
    """A 4.06 GiB (sparse) file stored, then a small one whose offset is past 4 GiB: ZIP64 sizes and offsets,
    memory bounded by the chunk size. (The zip is written sparse too: runs of zeros become holes.)"""
    root = tmp_path / "p"
    root.mkdir()
    size = 4 * 1024 * MiB + 64 * MiB
    with (root / "a-disk.img").open("wb") as fh:
        fh.truncate(size)
    (root / "b-after.txt").write_text("after the big one")
    out = tmp_path / "out.zip"
    written = 0
    with out.open("wb") as fh:
        for chunk in download.zip_stream(root, [""], chunk_size=8 * MiB):
            assert len(chunk) <= 9 * MiB
            if chunk != bytes(len(chunk)):
                fh.write(chunk)
            else:
                fh.seek(len(chunk), os.SEEK_CUR)
            written += len(chunk)
        fh.truncate(written)
    with zipfile.ZipFile(out) as zf:
        big = zf.getinfo("a-disk.img")
        assert (big.file_size, big.compress_size) == (size, size)
        after = zf.getinfo("b-after.txt")
        assert after.header_offset > 0xFFFFFFFF  # a ZIP64 offset
        assert zf.read("b-after.txt") == b"after the big one"


# -- restoring into live data --------------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Path:
    root = tmp_path / "live"
    root.mkdir()
    return root


def test_restore_a_folder_to_a_new_place(point: Path, live: Path) -> None:
    seen: list[int] = []
    result = restore.restore_tree(point, ["docs"], live, "restored/2026", on_bytes=seen.append)
    assert (live / "restored/2026/docs/a.txt").read_text() == "alpha"
    assert (live / "restored/2026/docs/sub/big.bin").read_bytes() == (point / "docs/sub/big.bin").read_bytes()
    assert os.readlink(live / "restored/2026/docs/sub/inside-link") == "../a.txt"
    assert (live / "restored/2026/docs/a.txt").stat().st_mtime == 1_600_000_000
    assert (result.copied, result.replaced, result.symlinks, result.folders) == (2, 0, 2, 4)
    assert sum(seen) == 3 * MiB + 17 + 5
    again = restore.restore_tree(point, ["docs"], live, "restored/2026")
    assert (again.copied, again.unchanged) == (0, 4)
    assert not [p for p in live.rglob("*") if p.name.startswith(restore.TMP_PREFIX)]


def test_older_files_are_replaced(point: Path, live: Path) -> None:
    (live / "top.txt").write_text("old")
    os.utime(live / "top.txt", (1_500_000_000, 1_500_000_000))  # older than the point's copy
    result = restore.restore_tree(point, ["docs/a.txt", "top.txt"], live, "")
    assert (live / "a.txt").read_text() == "alpha"  # a selected item lands under its own name in the target
    assert (live / "top.txt").read_text() == "top"
    assert (result.copied, result.replaced, result.skipped_newer) == (2, 1, 0)


def test_restore_in_place_keeps_newer_and_overwrite_replaces(point: Path, live: Path) -> None:
    (live / "docs").mkdir()
    (live / "docs/a.txt").write_text("edited after the point")
    result = restore.restore_tree(point, ["docs/a.txt"], live, "docs")
    assert (live / "docs/a.txt").read_text() == "edited after the point"
    assert result.skipped_newer == 1 and result.copied == 0
    result = restore.restore_tree(point, ["docs/a.txt"], live, "docs", overwrite=True)
    assert (live / "docs/a.txt").read_text() == "alpha"
    assert (result.copied, result.replaced) == (1, 1)


def test_folders_and_files_never_replace_each_other(point: Path, live: Path) -> None:
    (live / "top.txt").mkdir()
    (live / "docs").write_text("a file where the folder was")
    result = restore.restore_tree(point, ["top.txt", "docs"], live, "", overwrite=True)
    assert (live / "top.txt").is_dir() and (live / "docs").read_text() == "a file where the folder was"
    assert "top.txt" in result.conflicts and "docs" in result.conflicts
    assert result.copied == 0


def test_destination_symlinks_do_not_lead_out(point: Path, live: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, live / "trap")
    with pytest.raises(UnsafePath):
        restore.restore_tree(point, ["docs"], live, "trap")
    assert list(outside.iterdir()) == []
    os.symlink(str(outside / "victim.txt"), live / "top.txt")  # a link where a restored file goes
    result = restore.restore_tree(point, ["top.txt"], live, "", overwrite=True)
    assert result.copied == 1 and not (outside / "victim.txt").exists()  # the link was replaced, not followed
    assert (live / "top.txt").read_text() == "top" and not (live / "top.txt").is_symlink()


def test_leftover_temporary_files_are_removed(point: Path, live: Path) -> None:
    (live / "docs").mkdir()
    (live / "docs" / f"{restore.TMP_PREFIX}123-a.txt").write_text("half")
    restore.restore_tree(point, ["docs"], live, "")
    assert not [p for p in live.rglob("*") if p.name.startswith(restore.TMP_PREFIX)]


def test_restore_refuses_traversal(point: Path, live: Path) -> None:
    for paths, target in ((["../x"], ""), (["docs"], "../out"), (["docs"], "/abs"), (["escape/passwd"], "")):
        with pytest.raises(UnsafePath):
            restore.restore_tree(point, paths, live, target)
