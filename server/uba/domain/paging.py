"""Opaque page tokens (AIP-158).

A token carries the position after which the next page starts and a
fingerprint of the filters it was issued for, so a token replayed with
other filters is refused instead of silently returning the wrong rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from uba.domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.single("page_size", "must not be negative")
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument.single("page_size", f"at most {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


def fingerprint(filters: Any) -> str:
    text = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(position: list[int], filters: Any) -> str:
    raw = json.dumps({"p": position, "f": fingerprint(filters)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, filters: Any, size: int) -> list[int] | None:
    """The position in `token`, or None for the first page. Raises
    InvalidArgument for a malformed token or one issued for other filters."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position = data["p"]
        issued_for = data["f"]
        if not (
            isinstance(position, list)
            and len(position) == size
            and all(type(v) is int and -(2**63) <= v < 2**63 for v in position)
        ):
            raise ValueError
    except (
        ValueError,
        KeyError,
        TypeError,
        RecursionError,
    ):  # RecursionError: JSON nested too deep
        raise InvalidArgument.single(
            "page_token", "malformed; pass next_page_token of the previous page unchanged"
        ) from None
    if issued_for != fingerprint(filters):
        raise InvalidArgument.single(
            "page_token", "was issued for other filters; keep the filters of the first page"
        )
    return position
