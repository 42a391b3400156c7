"""The tunnel's errors: what went wrong with remote access, and what to do next."""

from __future__ import annotations

from appliance.system.errors import BulwarkError, Conflict, InvalidInput, NotFound, PermissionDenied


class TunnelNotConfigured(NotFound):
    """Remote access is not configured."""

    code = "tunnel_not_configured"
    hint = "Configure it with 'bulwark tunnel configure --host H --port P --user U --remote-port R'."


class HostKeyMismatch(InvalidInput):
    """The jump host presents the key {}, not the expected {}; nothing was pinned."""

    code = "host_key_mismatch"
    hint = "Ask the MSP for the jump host's real fingerprint ('ssh-keygen -lf' of its host key) before trusting it."


class NoPendingHostKey(Conflict):
    """There is no scanned host key waiting for confirmation."""

    code = "no_pending_host_key"
    hint = "Scan the jump host again ('bulwark tunnel scan') or paste its key with --host-key."


class HostKeyScanFailed(BulwarkError):
    """The jump host {} did not show its host key: {}"""

    code = "host_key_scan_failed"
    exit_status = 18
    http_status = 502
    retryable = True
    hint = "Check the host name and port and that this appliance may reach it; or paste the key with --host-key."


class RemoteSwitchLocked(PermissionDenied):
    """Remote sessions can only be switched on or off on site, not through the tunnel."""

    code = "remote_switch_on_site_only"
    hint = "Sign in on the appliance's LAN address (or use 'bulwark tunnel remote-sessions' on its console)."


class OnSiteOnly(PermissionDenied):
    """Remote access settings can only be changed on site, not through the tunnel itself."""

    code = "tunnel_on_site_only"
    hint = "Sign in on the appliance's LAN address (or use 'bulwark tunnel' on its console)."
