"""One exception type for every failed call, with what the server said in a
form a person (or the CLI) can print on one line."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class UbaError(Exception):
    """A call failed. `code` is the gRPC status code; `violations` lists
    (field, description) pairs from a google.rpc.BadRequest; `retry_delay` is
    the server's google.rpc.RetryInfo hint in seconds, when it sent one."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        target: str = "",
        violations: tuple[tuple[str, str], ...] = (),
        retry_delay: float | None = None,
    ):
        self.code = code
        self.message = message
        self.target = target
        self.violations = violations
        self.retry_delay = retry_delay
        super().__init__(self.describe())

    @classmethod
    def from_rpc(cls, err: grpc.RpcError, target: str = "") -> UbaError:
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        message = (err.details() if hasattr(err, "details") else str(err)) or ""
        violations: list[tuple[str, str]] = []
        retry_delay = None
        try:
            status = rpc_status.from_call(err)
        except (ValueError, AttributeError):  # no or inconsistent rich status
            status = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend((v.field, v.description) for v in bad.field_violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                retry_delay = info.retry_delay.ToTimedelta().total_seconds()
        return cls(code, message, target, tuple(violations), retry_delay)

    def describe(self) -> str:
        """One line, without the word 'error' or a traceback."""
        if self.code == grpc.StatusCode.UNAVAILABLE:
            return (
                f"cannot reach {self.target or 'the server'}: {_unavailable_reason(self.message)}"
            )
        if self.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return f"{self.target or 'the server'} did not answer in time"
        text = f"{self.code.name.lower().replace('_', ' ')}: {self.message}"
        missing = [f"{f}: {d}" for f, d in self.violations if f"{f}: {d}" not in self.message]
        if missing:
            text += " (" + "; ".join(missing) + ")"
        return text


def _unavailable_reason(details: str) -> str:
    """gRPC's connection errors are long; keep the part a person acts on."""
    lowered = details.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("dns resolution failed", "cannot resolve the host name"),
        ("name or service not known", "cannot resolve the host name"),
        ("handshake", "TLS handshake failed"),
        ("ssl", "TLS handshake failed"),
        ("timed out", "connection timed out"),
        ("shutting down", "server is shutting down"),
        ("connection reset", "connection reset"),
        ("socket closed", "connection closed"),
    ):
        if needle in lowered:
            return reason
    return details or "unavailable"
