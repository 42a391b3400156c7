"""The appliance database (SQLite, WAL) and its schema migrations."""

from appliance.store.db import Store, latest_version, migrate, schema_version

__all__ = ["Store", "latest_version", "migrate", "schema_version"]
