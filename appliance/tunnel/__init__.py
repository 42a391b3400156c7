"""MSP remote access: an outbound OpenSSH reverse tunnel from the appliance to the MSP's jump host.

The appliance makes its own ed25519 key (:mod:`.keys`), the MSP installs one restricted line for it on the jump
host, the jump host's key is pinned, and ``bulwarkd`` keeps ``ssh -N -R`` running (:mod:`.supervisor`) with
backoff, state and alerts. The forward leads to a loopback listener of the web UI reserved for it, so every
request through it is known to be remote (second factor always, "remote" in the audit log), and an on-site
switch can block them all (:mod:`.config`). See docs/remote-access.md."""
