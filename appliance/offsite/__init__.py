"""Offsite replication: encrypted, authenticated streams of recovery points on local, SFTP and S3 targets.

The format is specified in ``docs/offsite-format.md``; :mod:`envelope` implements its framing and cryptography,
:mod:`keys` the data keys and the recovery kit, :mod:`targets` the storage back ends, :mod:`upload` and
:mod:`download` the streams, :mod:`chains` the policy of what to send, and :mod:`jobs` the durable jobs.
"""
