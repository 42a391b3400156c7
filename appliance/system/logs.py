"""Logging set-up for the CLI and the daemon."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure(level: str | None = None, log_file: Path | None = None) -> None:
    """Log to stderr (and a rotating file if given). ``BULWARK_LOG_LEVEL`` overrides the level."""
    chosen = (level or os.environ.get("BULWARK_LOG_LEVEL") or "WARNING").upper()
    root = logging.getLogger()
    root.setLevel(chosen)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(stderr)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(log_file, maxBytes=10 * 1024 * 1024, backupCount=5)
        rotating.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(rotating)
