"""The agent's scan: metadata first, then hashes, the cache vouching for unchanged files."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from agent import scan


def test_walk_leaves_files_unhashed_until_asked_and_the_cache_spares_a_second_read(tmp_path: Path) -> None:
    top = tmp_path / "src"
    (top / "sub").mkdir(parents=True)
    (top / "small").write_bytes(b"small\n")
    (top / "sub" / "large").write_bytes(os.urandom(scan.DELTA_MIN))  # gets a hash per block too
    os.symlink("small", top / "link")
    cache: dict[str, list[object]] = {}
    found = scan.walk([str(top)], cache)
    by_path = {e["path"]: e for e in found.entries}
    large, small = scan.stored_path(str(top / "sub" / "large")), scan.stored_path(str(top / "small"))
    assert set(found.unhashed) == {large, small} and found.bytes_hashed == 0
    assert "hash" not in by_path[large] and by_path[scan.stored_path(str(top / "link"))]["target"] == "small"

    scan.hash_files(found, cache, {large})  # the largest first
    assert by_path[large]["hash"] == blake3.blake3((top / "sub" / "large").read_bytes()).hexdigest()
    assert len(by_path[large]["blocks"]) == 16 * 32 and set(found.unhashed) == {small}
    scan.hash_files(found, cache)
    assert by_path[small]["hash"] == blake3.blake3(b"small\n").hexdigest() and not found.unhashed
    assert found.bytes_hashed == scan.DELTA_MIN + 6

    again = scan.walk([str(top)], cache)  # nothing changed: every hash comes from the cache
    assert not again.unhashed and again.entries == found.entries
    (top / "small").write_bytes(b"SMALL\n")
    changed = scan.scan([str(top)], cache)
    assert changed.bytes_hashed == 6
    assert {e["path"]: e.get("hash") for e in changed.entries}[small] == blake3.blake3(b"SMALL\n").hexdigest()
