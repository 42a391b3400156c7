"""Clients (protected machines), their recovery points, retention, RPO status and file-level restore.

``model`` (settings and their validation, the ``bulwark:`` properties), ``service`` (create, read, change,
import from ZFS), ``removal`` (remove, reattach, destroy), ``points`` (recovery points, pins, locks, holds,
prune plans), ``rpo`` (age of the last good point against the target), ``browse`` (read-only clones for
browsing), ``download`` (streamed files and zips), ``restore`` (restore into live data), ``jobs`` (the snapshot,
prune and restore job kinds), ``scheduler`` and ``reconcile`` (bulwarkd's periodic work).
"""
