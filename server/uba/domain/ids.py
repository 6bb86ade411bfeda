"""Identifiers: UUIDv7 strings, from the shared uba_ids package (the
client library assigns event ids the same way)."""

from uba_ids import new_uuid7, uuid7_time

__all__ = ["new_uuid7", "uuid7_time"]
