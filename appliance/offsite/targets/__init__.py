"""Offsite targets: memory (tests), a local folder or USB disk, SFTP, S3-compatible object storage."""
