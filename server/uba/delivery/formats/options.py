"""What a destination may configure about how its payloads read."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote


@cache
def uba_version() -> str:
    """The installed uba's version ("0+unknown" when run from a checkout
    that was not installed)."""
    try:
        return importlib.metadata.version("uba")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    # Where analysts open uba: links to an alert or incident are made from it
    # (chat messages, OCSF src_url). Empty: no links.
    base_url: str = ""
    # The product version the payloads name; empty: the installed uba's.
    product_version: str = ""

    @property
    def version(self) -> str:
        return self.product_version or uba_version()

    def link(self, kind: str, item_id: str) -> str:
        """`{base_url}/{kind}s/{id}`, or "" without a base URL."""
        if not self.base_url or not item_id:
            return ""
        return f"{self.base_url.rstrip('/')}/{kind}s/{quote(item_id, safe='')}"


DEFAULT = RenderOptions()
