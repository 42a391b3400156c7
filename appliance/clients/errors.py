"""Errors of clients, recovery points and restores. Each docstring is the message; each hint says what next."""

from __future__ import annotations

from appliance.system.errors import AlreadyExists, BulwarkError, Busy, Conflict, InvalidInput, NotFound


class ClientNotFound(NotFound):
    """Client {} does not exist."""

    code = "client_not_found"
    hint = "List clients with 'bulwark client list --all'."


class ClientExists(AlreadyExists):
    """Client {} already exists{}."""

    code = "client_exists"
    hint = "Choose another name; a removed client's data is brought back with 'bulwark client reattach NAME'."


class ClientRemoved(Conflict):
    """Client {} is removed (its data is kept, but nothing runs for it)."""

    code = "client_removed"
    hint = "Bring it back with 'bulwark client reattach NAME' first."


class ConfirmationMismatch(InvalidInput):
    """Destroying the data of client {} needs the confirmation {!r}; got {!r}. Nothing was changed."""

    code = "confirmation_mismatch"
    hint = "Type the client's name exactly as the confirmation."


class ProtectedPointsExist(Conflict):
    """Client {} has {} pinned and {} locked recovery point(s); its data was not destroyed."""

    code = "protected_points_exist"
    hint = "Unpin its pinned points and wait for the locks to expire; immutability cannot be bypassed."


class PointNotFound(NotFound):
    """Client {} has no recovery point {}."""

    code = "point_not_found"
    hint = "List the client's points with 'bulwark snapshot list CLIENT'."


class AmbiguousPoint(InvalidInput):
    """Point {} of client {} exists in several datasets: {}."""

    code = "ambiguous_point"
    hint = "Name the dataset too, for example 'share@NAME' or 'files@NAME'."


class PointPinned(Conflict):
    """Recovery point {} is pinned and cannot be destroyed."""

    code = "point_pinned"
    hint = "Unpin it first if it really is no longer needed."


class PointLocked(Conflict):
    """Recovery point {} is locked until {} and cannot be destroyed by anyone."""

    code = "point_locked"
    hint = "Immutability locks cannot be shortened or removed; the point can be destroyed after the lock expires."


class PointInUse(Busy):
    """Recovery point {} is in use (a browse session or a restore reads it)."""

    code = "point_in_use"
    hint = "Close the browse sessions of this point or wait for the restore to finish, then retry."


class NoLiveDataset(InvalidInput):
    """Client {} has no live dataset {} (its kind is {})."""

    code = "no_live_dataset"
    hint = "Snapshots are taken of 'share' (SMB clients) and 'files' or 'images/N' (agent clients)."


class UnsafePath(InvalidInput):
    """Path {!r} is not allowed: {}."""

    code = "unsafe_path"
    hint = "Give a path relative to the point's root, without '..' and without leading '/'."


class PathNotFound(NotFound):
    """{!r} does not exist in {}."""

    code = "path_not_found"
    hint = "Browse the point to see what it holds."


class BrowseSessionNotFound(NotFound):
    """Browse session {} does not exist or has expired."""

    code = "browse_session_not_found"
    hint = "Open the point again to browse it."


class DaemonNotRunning(BulwarkError):
    """Job {} is queued, but bulwarkd is not running: nothing will run it until the daemon starts."""

    code = "daemon_not_running"
    exit_status = 16
    http_status = 503
    retryable = True
    hint = "Start the appliance ('bulwark run', or 'systemctl start bulwarkd'); the queued job then runs."
