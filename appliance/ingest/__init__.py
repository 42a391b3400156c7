"""Ingest: the appliance side of the backup agent protocol (docs/agent-protocol.md), served at /agent/v1."""

PROTOCOL_VERSION = 1
