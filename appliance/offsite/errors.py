"""Errors of offsite replication. Each docstring is the message; each hint says what to do next."""

from __future__ import annotations

from appliance.system.errors import AlreadyExists, BulwarkError, Conflict, InvalidInput, NotFound


class OffsiteError(BulwarkError):
    """Offsite replication failed: {}"""

    code = "offsite_error"
    exit_status = 20
    http_status = 502


class NoDataKey(OffsiteError):
    """No offsite data key exists on this appliance."""

    code = "offsite_no_key"
    http_status = 409
    hint = "Create one with 'bulwark offsite key init --passphrase-stdin', then export the recovery kit."


class KeyMissing(OffsiteError):
    """Offsite object {} is encrypted with data key {}, which this appliance does not have."""

    code = "offsite_key_missing"
    exit_status = 21
    hint = "Give the recovery kit that holds this key (--kit FILE with its passphrase); nothing was decrypted."


class WrongPassphrase(OffsiteError):
    """The passphrase does not open the recovery kit (key {})."""

    code = "offsite_wrong_passphrase"
    exit_status = 21
    http_status = 400
    hint = "Type the passphrase that was set with 'bulwark offsite key init'; it is case-sensitive."


class ApplianceKeyMissing(OffsiteError):
    """The appliance key file {} is missing or damaged, so the stored data keys cannot be opened."""

    code = "offsite_appliance_key_missing"
    exit_status = 21
    hint = "Restore the data directory's offsite/ folder, or import the recovery kit with 'bulwark offsite key import'."


class Tampered(OffsiteError):
    """Offsite object {} failed authentication: {}"""

    code = "offsite_tampered"
    exit_status = 22
    hint = (
        "The offsite copy was changed, damaged or mixed up; nothing unauthenticated was restored. "
        "Run 'bulwark offsite verify' and replicate again (a new full chain is sent if needed)."
    )


class ObjectMissing(OffsiteError):
    """Offsite object {} is missing on target {}."""

    code = "offsite_object_missing"
    exit_status = 22
    http_status = 404
    hint = "The offsite copy is incomplete; verify the target and replicate again."


class BadKit(InvalidInput):
    """The recovery kit cannot be read: {}"""

    code = "offsite_bad_kit"
    hint = "Give the file written by 'bulwark offsite key export-kit', or type its printable lines exactly."


class UnsupportedVersion(OffsiteError):
    """Offsite object {} has format version {}, newer than this Bulwark reads (1)."""

    code = "offsite_unsupported_version"
    hint = "Update Bulwark to a version that reads it."


class TargetNotFound(NotFound):
    """Offsite target {} does not exist."""

    code = "offsite_target_not_found"
    hint = "List targets with 'bulwark offsite target list'."


class TargetExists(AlreadyExists):
    """Offsite target {} already exists."""

    code = "offsite_target_exists"


class TargetUnreachable(OffsiteError):
    """Offsite target {} cannot be reached: {}"""

    code = "offsite_target_unreachable"
    exit_status = 23
    retryable = True
    hint = "Check the network, the credentials and the target's settings; the next run resumes where this stopped."


class HostKeyMismatch(OffsiteError):
    """The SFTP server of target {} did not show the pinned host key."""

    code = "offsite_host_key_mismatch"
    exit_status = 23
    hint = (
        "Someone may be intercepting the connection, or the server was reinstalled. Check the server's key "
        "fingerprint out of band, then update it with 'bulwark offsite target set NAME --host-key'."
    )


class ForeignRepository(Conflict):
    """Target {} holds the repository of another appliance ({})."""

    code = "offsite_foreign_repository"
    hint = "Give each appliance its own folder, path or prefix; restoring from it still works."


class NothingOffsite(NotFound):
    """Target {} holds no offsite copy of {}."""

    code = "offsite_nothing"
    hint = "Run 'bulwark offsite run CLIENT' first, or check the target and client names."
