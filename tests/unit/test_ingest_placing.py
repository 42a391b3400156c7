"""Small files written ahead of the commit (appliance.ingest.placing) on a real directory: only where the commit
would write every file anyway, kept by the commit only while they are what was written, never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from appliance.ingest import placing
from appliance.ingest import tree as tree_module
from appliance.ingest.files import Area
from appliance.ingest.manifest import Entry
from tests.unit.test_ingest_tree import T0, commit, d, f, h, stage


def link(path: str, target: str) -> Entry:
    return Entry(path, "l", 0o777, os.getuid(), os.getgid(), T0, target=target)


def watch_writes(area: Area, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths (from the area's root) opened for writing from now on."""
    opened: list[str] = []
    real_open = os.open

    def watch(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            opened.append(os.path.relpath(path, area.root))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watch)
    return opened


def packs_in(area: Area) -> list[str]:
    return [n for n in os.listdir(area.staging) if n.endswith(".pack")]


@pytest.fixture
def area(tmp_path: Path) -> Area:
    (tmp_path / "ds").mkdir()
    return Area(tmp_path / "ds")


def test_a_first_backup_writes_packed_files_ahead_and_the_commit_keeps_them(
    area: Area, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, big = b"first small\n" * 40, b"second small\n" * 9, b"large content\n" * 9000
    stage(area, a, b)
    entries = [d("docs", 0o750), f("docs/a", a), f("docs/b", b, mode=0o600), f("docs/b-copy", b), f("big", big)]
    entries.sort(key=lambda e: e.path)
    assert area.recovering()  # no manifest yet: the commit would write everything
    assert area.prepare(entries) == 3  # big has not arrived: the commit writes it later
    assert (area.root / "docs" / "a").read_bytes() == a and (area.root / "docs" / "b-copy").read_bytes() == b
    assert stat.S_IMODE(os.stat(area.root / "docs" / "b").st_mode) == 0o600
    assert not (area.root / "big").exists()
    assert placing.load_ledger(area.staging) == {"docs/a": h(a), "docs/b": h(b), "docs/b-copy": h(b)}
    assert commit(area, entries) == [h(big)]  # the commit still wants everything
    assert area.prepare(entries) == 0  # asked again: what is in place stays
    opened = watch_writes(area, monkeypatch)
    stage(area, big)  # arrives after the prepare: written straight to its file, not kept as a pack
    assert [p for p in opened if not p.startswith(".bulwark")] == ["big"]
    assert len(packs_in(area)) == 1  # the one staged before the prepare
    assert area.have([h(big)], []) == ([], {})  # not asked for again
    opened.clear()
    assert commit(area, entries) == []
    assert [p for p in opened if not p.startswith(".bulwark")] == []  # every file was kept as written
    assert (area.root / "big").read_bytes() == big
    assert stat.S_IMODE(os.stat(area.root / "docs").st_mode) == 0o750  # the directory's own mode, at the end
    assert os.stat(area.root / "docs" / "a").st_mtime_ns == T0
    assert not (area.staging / placing.LEDGER).exists() and not area.recovering()


def test_an_area_with_a_clean_base_writes_nothing_ahead(area: Area) -> None:
    a, b = b"kept\n" * 10, b"new\n" * 10
    stage(area, a)
    assert commit(area, [f("a", a)]) == []
    stage(area, b)
    assert area.prepare([f("a", a), f("b", b)]) == 0
    assert not (area.root / "b").exists()  # only the commit changes a committed tree


def test_a_file_written_ahead_is_kept_only_while_it_is_what_was_written(area: Area) -> None:
    a, other = b"A" * 100, b"B" * 100  # the same size: only the record tells them apart
    stage(area, a, other)
    assert area.prepare([f("x", a), f("y", a)]) == 2
    (area.root / "y").write_bytes(other)  # no longer what was written (its mode shows it): written again
    os.utime(area.root / "y", ns=(T0, T0))
    os.chmod(area.root / "y", 0o600)
    assert commit(area, [f("x", other), f("y", a)]) == []  # x now has other content, same size and mtime
    assert (area.root / "x").read_bytes() == other and (area.root / "y").read_bytes() == a
    assert stat.S_IMODE(os.stat(area.root / "y").st_mode) == 0o644


def test_the_files_of_the_last_manifest_are_left_to_the_commit(area: Area) -> None:
    old, new = b"yesterday's log\n" * 50, b"today's log\n"
    stage(area, old)
    assert commit(area, [f("app.log", old)]) == []
    area.applying.touch()  # an interrupted commit since: no clean base, so files may be written ahead
    stage(area, new)
    entries = [f("app.log", new), f("app.log.1", old)]  # rotated: the old content moved, a new file in its place
    assert area.prepare(entries) == 0  # app.log is the last manifest's, and the commit copies it from there
    assert (area.root / "app.log").read_bytes() == old
    assert commit(area, entries) == []  # nothing to send again
    assert (area.root / "app.log").read_bytes() == new and (area.root / "app.log.1").read_bytes() == old


def test_an_interrupted_commit_drops_the_record_first(area: Area, monkeypatch: pytest.MonkeyPatch) -> None:
    a, a2 = b"one version\n" * 8, b"one VERSION\n" * 8  # same size and mtime
    stage(area, a, a2)
    assert area.prepare([f("p", a), f("q", a)]) == 2
    real_open = os.open
    calls: list[Any] = []

    def cut(path: Any, *args: Any, **kwargs: Any) -> int:  # power cut after one file was written again
        if str(path).endswith("/q"):
            calls.append(path)
            raise OSError("power cut")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", cut)
    entries = [f("p", a2), f("q", a2)]
    base = area.load_manifest()
    assert area.gather(entries, base) == []
    with pytest.raises(OSError, match="power cut"):
        area.apply(entries, base)
    monkeypatch.setattr(os, "open", real_open)
    assert calls and (area.root / "p").read_bytes() == a2
    assert placing.load_ledger(area.staging) == {}  # p no longer holds what the record said
    assert commit(area, [f("p", a), f("q", a)]) == []
    assert (area.root / "p").read_bytes() == a and (area.root / "q").read_bytes() == a


def test_nothing_is_written_through_a_symlink_or_over_a_directory(area: Area, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    a = b"must stay inside\n"
    assert commit(area, [link("docs", str(outside)), d("plain")]) == []
    stage(area, a)
    area.applying.touch()  # as after an interrupted commit: the tree is not trusted
    (area.root / "plain" / "f").mkdir()  # a directory where the next manifest has a file
    entries = sorted([d("docs"), f("docs/a", a), d("plain"), f("plain/f", a)], key=lambda e: e.path)
    assert area.prepare(entries) == 0
    assert os.listdir(outside) == [] and (area.root / "plain" / "f").is_dir()
    assert commit(area, entries) == []
    assert os.listdir(outside) == []
    assert (area.root / "docs").is_dir() and not (area.root / "docs").is_symlink()
    assert (area.root / "docs" / "a").read_bytes() == a and (area.root / "plain" / "f").read_bytes() == a


def test_an_unreadable_record_counts_as_none(area: Area) -> None:
    a = b"content\n"
    stage(area, a)
    (area.staging / placing.LEDGER).write_text('["not", "a", "mapping"]')
    assert placing.load_ledger(area.staging) == {}
    assert area.prepare([f("a", a)]) == 1
    (area.staging / placing.LEDGER).write_text("{cut sh")
    assert commit(area, [f("a", a)]) == []
    assert (area.root / "a").read_bytes() == a


def test_packs_arriving_after_a_prepare_are_written_to_their_files(area: Area) -> None:
    a, b, c = b"alpha\n" * 30, b"beta\n" * 30, b"gamma\n" * 30
    entries = sorted([d("x"), d("x/y", 0o700), f("x/a", a), f("x/y/b", b, mode=0o600), f("x/y/b2", b), f("c", c)],
                     key=lambda e: e.path)  # fmt: skip
    assert area.prepare(entries) == 0  # nothing has arrived: the directories are made, the plan kept
    assert (area.root / "x" / "y").is_dir()
    stage(area, a, b)
    assert packs_in(area) == []  # both went straight to their files
    assert (area.root / "x" / "a").read_bytes() == a and (area.root / "x" / "y" / "b2").read_bytes() == b
    assert stat.S_IMODE(os.stat(area.root / "x" / "y" / "b").st_mode) == 0o600
    assert os.stat(area.root / "x" / "a").st_mtime_ns == T0
    assert placing.load_ledger(area.staging) == {"x/a": h(a), "x/y/b": h(b), "x/y/b2": h(b)}
    assert area.have([h(a), h(b), h(c)], []) == ([h(c)], {})
    stage(area, c)
    assert commit(area, entries) == []
    assert (area.root / "c").read_bytes() == c
    assert os.listdir(area.staging) == [] and not area.recovering()


def test_content_written_ahead_is_copied_where_else_it_is_wanted_and_checked(area: Area) -> None:
    a, b = b"shared content\n" * 20, b"other content.\n" * 20  # the same size
    stage(area, b)
    assert commit(area, [f("kept", b)]) == []
    area.applying.touch()  # an interrupted commit since
    entries = [f("kept", a), f("new", a)]  # "kept" is the last manifest's: only the commit changes it
    assert area.prepare(entries) == 0
    stage(area, a)
    assert packs_in(area) == [] and (area.root / "new").read_bytes() == a
    assert (area.root / "kept").read_bytes() == b
    assert commit(area, entries) == []  # copied from "new", verified by its hash
    assert (area.root / "kept").read_bytes() == a and (area.root / "new").read_bytes() == a

    area.applying.touch()
    assert area.prepare([f("kept", a), f("new", a), f("third", b)]) == 0
    stage(area, b)
    (area.root / "third").write_bytes(a)  # changed behind the ledger, same size
    assert area.have([h(b)], area.load_manifest()) == ([], {})  # still a file: the commit checks it
    assert commit(area, [f("kept", b), f("third", b)]) == [h(b)]  # not b any more: asked for, nothing changed
    assert (area.root / "kept").read_bytes() == a


def test_a_commit_drops_the_plan_before_it_changes_the_tree(area: Area, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = b"planned\n" * 4, b"other\n" * 4
    stage(area, b)
    assert area.prepare([d("docs"), f("docs/a", a)]) == 0
    assert placing.load_plan(area.staging)
    entries = [d("docs"), f("docs/b", b)]  # the next job's manifest: docs/a is gone
    base = area.load_manifest()
    assert area.gather(entries, base) == []

    def cut(*args: Any, **kwargs: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(tree_module.Applier, "apply", cut)
    with pytest.raises(OSError, match="power cut"):
        area.apply(entries, base)
    monkeypatch.undo()
    assert not placing.has_plan(area.staging)
    stage(area, a)  # a pack of the old job, late: kept as a pack, not written where the old plan said
    assert not (area.root / "docs" / "a").exists() and len(packs_in(area)) == 2


def test_the_last_ledger_names_what_was_last_written_at_a_path(area: Area) -> None:
    one, two = b"first version\n", b"other version\n"  # the same size: only the ledger tells them apart
    assert area.prepare([f("p", one)]) == 0  # a first backup, cut short after its pack arrived
    stage(area, one)
    assert placing.load_ledger(area.staging) == {"p": h(one)}
    assert area.prepare([f("p", two)]) == 0  # the next run: p changed on the client
    assert placing.load_ledger(area.staging) == {}  # p is the plan's now: its old record is gone
    assert area.have([h(one)], []) == ([h(one)], {})
    stage(area, two)
    assert (area.root / "p").read_bytes() == two and placing.load_ledger(area.staging) == {"p": h(two)}
    assert area.prepare([f("p", one)]) == 0  # and back: the file holds two, whatever its metadata says
    stage(area, one)
    assert placing.load_ledger(area.staging) == {"p": h(one)}
    assert commit(area, [f("p", one)]) == []
    assert (area.root / "p").read_bytes() == one


def test_a_pack_is_not_written_through_a_directory_replaced_since_the_prepare(area: Area, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    a, b = b"must stay inside\n", b"fine\n"
    assert area.prepare([d("docs"), d("docs/sub"), f("docs/sub/a", a), f("b", b)]) == 0
    os.rmdir(area.root / "docs" / "sub")
    os.rmdir(area.root / "docs")
    os.symlink(outside, area.root / "docs")  # not something the appliance does: checked all the same
    (outside / "sub").mkdir()
    stage(area, a, b)
    assert os.listdir(outside / "sub") == [] and (area.root / "b").read_bytes() == b
    assert len(packs_in(area)) == 1 and area.have([h(a), h(b)], []) == ([], {})  # a waits in a pack


def test_a_prepare_cut_short_leaves_no_old_plan_behind(area: Area, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = b"version one\n", b"version two\n"
    assert area.prepare([f("p", one)]) == 0
    stage(area, two)
    assert placing.has_plan(area.staging)

    def cut(*args: Any, **kwargs: Any) -> set[str]:
        raise OSError("power cut")

    monkeypatch.setattr(tree_module, "write_from_packs", cut)
    with pytest.raises(OSError, match="power cut"):
        area.prepare([f("p", two)])
    monkeypatch.undo()
    assert not placing.has_plan(area.staging)  # a late pack of "one" is not written to p by the old plan
    stage(area, one)
    assert not (area.root / "p").exists()
