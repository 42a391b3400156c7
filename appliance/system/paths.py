"""Where the appliance keeps its state.

The data directory is ``/var/lib/bulwark`` unless ``--data-dir`` or ``BULWARK_DATA_DIR`` says otherwise
(the command-line option wins). Everything else is derived from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.system.errors import InvalidInput, NotInitialized

DEFAULT_DATA_DIR = Path("/var/lib/bulwark")
ENV_DATA_DIR = "BULWARK_DATA_DIR"


def resolve_data_dir(option: str | os.PathLike[str] | None = None) -> Path:
    raw = option if option is not None else os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR
    path = Path(raw)
    if not path.is_absolute():
        path = Path.cwd() / path
    if any(ch in str(path) for ch in "\n\r\t\0"):
        raise InvalidInput("the data directory path must not contain control characters")
    return path


@dataclass(frozen=True)
class Paths:
    data_dir: Path

    @classmethod
    def resolve(cls, option: str | os.PathLike[str] | None = None) -> Paths:
        return cls(resolve_data_dir(option))

    @property
    def db(self) -> Path:
        return self.data_dir / "bulwark.db"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def tls_cert(self) -> Path:
        return self.tls_dir / "cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.tls_dir / "key.pem"

    @property
    def pool_dir(self) -> Path:
        """Sparse files of a file-backed pool."""
        return self.data_dir / "pool"

    @property
    def run_dir(self) -> Path:
        """PID files and sockets."""
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def secret_key(self) -> Path:
        """The web UI's session signing key."""
        return self.data_dir / "secret.key"

    def is_initialized(self) -> bool:
        return self.db.exists()

    def require_initialized(self) -> None:
        if not self.is_initialized():
            raise NotInitialized(str(self.data_dir))

    def make_dirs(self) -> None:
        for d in (self.data_dir, self.tls_dir, self.pool_dir, self.run_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o750)  # noqa: S103 - group bulwark may read state
        os.chmod(self.tls_dir, 0o700)
