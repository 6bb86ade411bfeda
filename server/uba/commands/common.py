"""What every client command shares: the connection settings (flags, then
UBA_* variables, then defaults), error handling and exit codes, argument
parsing of times and durations, and the helpers that print text, tables and
JSON safely on a terminal.

Exit codes scripts can trust: 0 ok, 1 the server said no (or could not be
reached, or a partial failure), 2 usage. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from uba.domain.validation import IDENTIFIER_REFUSED


class UsageError(Exception):
    """Bad arguments the parser could not catch; exit code 2."""


# -- settings ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How client commands reach the server: flags, then UBA_* environment
    variables, then these defaults (field FOO is flag --foo, variable UBA_FOO)."""

    server: str = "127.0.0.1:50051"
    api_key: str = ""
    tls: bool = False
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    timeout: float = 10.0
    data_dir: str = "data"

    HELP = {
        "server": "the uba server HOST:PORT [UBA_SERVER, 127.0.0.1:50051]",
        "api_key": "API key, sent as 'authorization: Bearer KEY' [UBA_API_KEY]",
        "tls": "connect with TLS, checking the server against the system's roots [UBA_TLS]",
        "ca_file": "connect with TLS, checking the server against this PEM file [UBA_CA_FILE]",
        "client_cert": "PEM certificate to present to a server that requires one (with --tls or "
        "--ca-file) [UBA_CLIENT_CERT]",
        "client_key": "PEM private key of --client-cert [UBA_CLIENT_KEY]",
        "timeout": "seconds each call may take [UBA_TIMEOUT, 10]",
        "data_dir": "without --api-key, read the key from DATA_DIR/admin.key if it exists "
        "[UBA_DATA_DIR, ./data]",
    }

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("connection")
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.type in (bool, "bool"):
                group.add_argument(flag, action="store_true", default=None, help=cls.HELP[f.name])
            else:
                group.add_argument(
                    flag, default=None, metavar=f.name.upper(), help=cls.HELP[f.name]
                )

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> ClientSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = getattr(args, f.name, None) if args is not None else None
            if raw is None:
                raw = environ.get("UBA_" + f.name.upper())
            if raw is None or raw == "":
                continue
            if f.type in (bool, "bool"):
                values[f.name] = (
                    raw
                    if isinstance(raw, bool)
                    else raw.strip().lower() in ("1", "true", "yes", "on")
                )
            elif f.type in (float, "float"):
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise UsageError(
                        f"--{f.name.replace('_', '-')}: not a number: {raw!r}"
                    ) from None
            else:
                values[f.name] = raw
        return cls(**values)

    def key(self) -> str:
        """--api-key / UBA_API_KEY, else the admin key a local server wrote
        on its first start (DATA_DIR/admin.key), else none."""
        if self.api_key:
            return self.api_key
        try:
            return (Path(self.data_dir) / "admin.key").read_text().strip()
        except OSError:
            return ""

    def client(self):
        from uba_client import UbaClient

        tls: Any = None
        if self.ca_file:
            try:
                tls = open(self.ca_file, "rb").read()
            except OSError as exc:
                raise UsageError(f"--ca-file: {exc.strerror}: {self.ca_file}") from None
        elif self.tls:
            tls = True
        if (self.client_cert or self.client_key) and tls is None:
            raise UsageError("--client-cert needs TLS: add --tls or --ca-file")
        if bool(self.client_cert) != bool(self.client_key):
            raise UsageError("--client-cert and --client-key go together")
        try:
            return UbaClient(
                self.server,
                api_key=self.key() or None,
                tls=tls,
                timeout=self.timeout,
                client_cert=self.client_cert or None,
                client_key=self.client_key or None,
            )
        except OSError as exc:
            raise UsageError(f"cannot read {exc.filename}: {exc.strerror}") from None


def common_parser() -> argparse.ArgumentParser:
    """The options every client command takes, as an argparse parent."""
    parent = argparse.ArgumentParser(add_help=False)
    ClientSettings.add_arguments(parent)
    return parent


def json_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print data as JSON instead of text")
    return parent


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turns failures into one line on stderr and the documented exit code."""
    from uba_client import UbaError

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except UbaError as exc:
            fail(str(exc))
            return 1
        except UsageError as exc:
            fail(str(exc))
            return 2
        except BrokenPipeError:  # `uba logs | head`
            sys.stderr.close()
            return 0

    return run


def fail(message: str) -> None:
    print(shown(f"uba: {message}"), file=sys.stderr)


def note(message: str) -> None:
    print(shown(message), file=sys.stderr, flush=True)


# -- what reaches a terminal -------------------------------------------------------
# Stored text is shown, never obeyed: a control character (TAB, CR, LF, ESC,
# C1), a format character (bidirectional override, zero-width) or a line or
# paragraph separator in a value is printed as an escape such as \t, \n or
# \x1b, so no value can start a forged row or send the terminal a command.
# The same characters identifiers refuse at ingest; older data and free text
# may still hold some. Backslashes stay as they are (DOMAIN\user reads well).

_UNSHOWN = IDENTIFIER_REFUSED
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def shown(value: object) -> str:
    """`value` as text safe to print on a terminal, on one line."""
    text = str(value)
    if text.isprintable():  # the usual case, one scan at C speed
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSHOWN else c for c in text)


def say(line: str = "", **kwargs: Any) -> None:
    """Prints one line of text output, its values escaped by shown()."""
    print(shown(line), **kwargs)


def as_dict(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True)


def json_text(value: Any, **kwargs: Any) -> str:
    """JSON as json.dumps writes it (UTF-8 as is), with U+2028, U+2029 and
    NEL escaped, which line-splitting readers take for line ends."""
    from uba.domain.logs import JSON_LINE_SEPARATORS

    return json.dumps(value, ensure_ascii=False, **kwargs).translate(JSON_LINE_SEPARATORS)


def print_followed(
    follower: Any, what: str, target: str, args: argparse.Namespace, line: Callable[[Any], str]
) -> int:
    """Prints a follower's items as they come (`line` for text, JSON Lines
    with --json) until --count items, the idle timeout or Ctrl-C; then says
    how to resume."""
    note(f"uba: following {what} on {target}; Ctrl-C to stop")
    seen = 0
    try:
        for item in follower:
            if args.json:
                print(json_text(as_dict(item)), flush=True)
            else:
                say(line(item), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()
        note(f"uba: resume with --after-seq {follower.seq}")
    return 0


def print_json(value: Any) -> None:
    print(json_text(value, indent=2))


# -- parsing arguments --------------------------------------------------------

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d', '2w' or plain seconds."""
    text = text.strip().lower()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    m = _RELATIVE.fullmatch(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 24h, 7d)")
    return timedelta(seconds=float(m[1]) * _UNITS[m[2]])


def parse_time(text: str) -> datetime:
    """ISO 8601 ('2026-11-24', '2026-11-24T08:00:00Z'; no zone means UTC), or
    a duration meaning that long ago ('2h', '7d')."""
    if _RELATIVE.fullmatch(text.strip().lower()):
        return datetime.now(UTC) - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (e.g. 2026-11-24T08:00:00Z or 2h for 2 hours ago)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- text output --------------------------------------------------------------


def timestamp_text(message, name: str) -> str:
    """Timestamp field `name` of `message` as UTC text, or '-' when unset."""
    if not message.HasField(name):
        return "-"
    return getattr(message, name).ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[list[str]], headers: list[str]) -> None:
    """Columns padded to their widest cell; every cell escaped by shown()."""
    cells = [[shown(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip())


# -- listings ---------------------------------------------------------------------


def fetch_listing(
    args: argparse.Namespace, list_page, iterate, field: str, filters: dict
) -> tuple[list, str]:
    """The items a list command shows: every page with --all, else the page
    asked for; and the token of the next page ('' when none)."""
    if args.all:
        return list(iterate(**filters)), ""
    page = list_page(page_size=args.page_size, page_token=args.page_token, **filters)
    return list(getattr(page, field)), page.next_page_token


def print_listing(
    args: argparse.Namespace,
    field: str,
    items: list,
    token: str,
    rows: list[list[str]],
    headers: list[str],
) -> None:
    """A listing as JSON (with --json) or as a table, then where more is."""
    if args.json:
        print_json({field: [as_dict(i) for i in items], "next_page_token": token})
        return
    table(rows, headers)
    if token:
        note(f"more: --page-token {token}")


# -- small renderings --------------------------------------------------------------

_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Counts as a row of block characters scaled to the largest."""
    top = max(values, default=0)
    if not top:
        return "".join(_BARS[0] for _ in values)
    return "".join(_BARS[min(8, round(v / top * 8))] for v in values)


def analytics_mode_name(value: int) -> str:
    """An AnalyticsMode number as its short name, e.g. 'enhanced'."""
    from uba.v1 import service_pb2

    return service_pb2.AnalyticsMode.Name(value).removeprefix("ANALYTICS_MODE_").lower()
