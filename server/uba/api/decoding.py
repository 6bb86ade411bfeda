"""Request decoding that answers INVALID_ARGUMENT instead of failing the call.

gRPC parses a request before any handler runs and answers a parse failure
(a string field that is not UTF-8, which the gateway passes on from a query
string like ?user_id=%FF) with UNKNOWN, which the gateway turns into 500.
Instead, `tolerant_deserializer` turns such a request into an Undecodable,
which the error mapping (uba.api.errors) refuses with INVALID_ARGUMENT naming
the field, after the auth interceptor (outside it) has checked the caller.
To name the field it walks the request's wire form itself, since the
protobuf parser only says that decoding failed.

Text with a NUL character is refused the same way, except by the ingest
methods (their validation refuses control characters per event, so a batch
keeps its per-item answers): no stored text can hold one (PostgreSQL text
cannot), so a filter or id with one could only fail in the database driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from uba.domain import errors

# Methods whose requests may carry NUL characters to their own validation.
_VALIDATES_TEXT_ITSELF = frozenset({"RecordActivity", "RecordActivities"})

# Nesting deeper than this is not walked (the field is then not named).
_MAX_DEPTH = 16

Deserializer = Callable[[bytes], object]


class Undecodable:
    """What a request that is not a valid message deserialises to."""

    __slots__ = ("error",)

    def __init__(self, error: errors.InvalidArgument):
        self.error = error


def tolerant_deserializer(method: str, deserializer: Deserializer | None) -> Deserializer | None:
    """`deserializer` (a generated message's FromString) for the RPC `method`
    (its full path), returning an Undecodable instead of raising for bytes
    that do not parse or text that holds a NUL character."""
    if deserializer is None:
        return None
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    check_nul = method.rsplit("/", 1)[-1] not in _VALIDATES_TEXT_ITSELF

    def deserialize(raw: bytes) -> object:
        try:
            message = deserializer(raw)
        except DecodeError:
            return Undecodable(_decode_error(descriptor, raw))
        # The byte test is a cheap filter: zero bytes also occur in numbers.
        if check_nul and b"\x00" in raw and (field := _nul_field(message)):
            return Undecodable(
                errors.InvalidArgument.single(field, "must not contain NUL characters")
            )
        return message

    return deserialize


def _nul_field(message: Any, prefix: str = "") -> str | None:
    """The path of the first text of `message` holding a NUL character."""
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == field.TYPE_STRING:
            values = value if field.is_repeated else [value]
            for i, text in enumerate(values):
                if "\x00" in text:
                    return f"{name}[{i}]" if field.is_repeated else name
        elif field.type == field.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if "\x00" in str(key) or (isinstance(item, str) and "\x00" in item):
                        return f"{name}[{str(key)[:64]!r}]"
                continue
            items = value if field.is_repeated else [value]
            for i, item in enumerate(items):
                found = _nul_field(item, f"{name}[{i}]." if field.is_repeated else f"{name}.")
                if found:
                    return found
    return None


def _decode_error(descriptor: Any, raw: bytes) -> errors.InvalidArgument:
    field = _bad_utf8_field(descriptor, raw) if descriptor is not None else None
    if field:
        return errors.InvalidArgument.single(field, "not valid UTF-8")
    name = descriptor.full_name if descriptor is not None else "request"
    return errors.InvalidArgument([], f"the request is not a valid {name} message")


# -- the wire walker --------------------------------------------------------


class _Corrupt(Exception):
    """The bytes end inside a value or a varint runs too long."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise _Corrupt
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Corrupt


def _bad_utf8_field(descriptor: Any, data: bytes, prefix: str = "", depth: int = 0) -> str | None:
    """The path (e.g. "events[2].user_id") of the first string field of
    `data`, the wire form of a `descriptor` message, that is not UTF-8."""
    if depth > _MAX_DEPTH:
        return None
    seen: dict[int, int] = {}
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type in (1, 5):
                pos += 8 if wire_type == 1 else 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    raise _Corrupt
                value, pos = data[pos : pos + length], pos + length
                field = descriptor.fields_by_number.get(number)
                if field is None:
                    continue
                name = prefix + field.name
                if field.is_repeated and not (
                    field.message_type and field.message_type.GetOptions().map_entry
                ):
                    seen[number] = seen.get(number, -1) + 1
                    name += f"[{seen[number]}]"
                if field.type == field.TYPE_STRING:
                    try:
                        value.decode("utf-8")
                    except UnicodeDecodeError:
                        return name
                elif field.type == field.TYPE_MESSAGE:
                    found = _bad_utf8_field(field.message_type, value, name + ".", depth + 1)
                    if found:
                        return found
            else:
                return None
    except _Corrupt:
        return None
    return None
