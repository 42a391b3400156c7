"""Paths inside a recovery point or a client's live data, from people and clients who are never trusted:
no ``..``, no absolute paths, no NUL, and no symlink that leads out of the root."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.clients.errors import PathNotFound, UnsafePath

MAX_PATH = 4096


def clean_relative(path: str) -> str:
    """``path`` as a clean relative path ('' for the root): ``a/./b/`` → ``a/b``; refuses ``..`` and ``/a``."""
    if not isinstance(path, str):
        raise UnsafePath(path, "it is not text")
    if len(path) > MAX_PATH:
        raise UnsafePath(path[:80] + "…", "it is too long")
    if "\0" in path:
        raise UnsafePath(path, "it contains a NUL character")
    if path.startswith("/"):
        raise UnsafePath(path, "absolute paths are not allowed")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePath(path, "'..' is not allowed")
    return "/".join(parts)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_inside(root: Path, rel: str, *, must_exist: bool = True) -> Path:
    """``root/rel`` with every symlink on the way resolved, refused if that leads outside ``root``.

    The last component is resolved too; use :func:`parent_inside` to handle an entry that is itself a symlink."""
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, clean_relative(rel)))
    if not _inside(candidate, real_root):
        raise UnsafePath(rel, "it leads outside the point through a symbolic link")
    if must_exist and not os.path.lexists(candidate):
        raise PathNotFound(rel, "this point")
    return Path(candidate)


def parent_inside(root: Path, rel: str) -> Path:
    """``root/rel`` with its parent directories resolved (and checked to stay inside ``root``) but the last
    component left as it is, so that a symlink is seen as a symlink, never followed."""
    clean = clean_relative(rel)
    if not clean:
        return Path(os.path.realpath(root))
    head, _, name = clean.rpartition("/")
    parent = resolve_inside(root, head)
    path = parent / name
    if not os.path.lexists(path):
        raise PathNotFound(rel, "this point")
    return path
