"""Domain exceptions. The API layer maps each to one gRPC status code
(see uba.api.errors); domain code never imports grpc."""

from __future__ import annotations

from collections.abc import Iterable

from uba.domain.events import FieldViolation


class DomainError(Exception):
    """Base of every error the domain reports to a caller."""


class InvalidArgument(DomainError):
    """The request is malformed; `violations` name the offending fields."""

    def __init__(self, violations: Iterable[FieldViolation], message: str | None = None):
        self.violations = tuple(violations)
        if message is None:
            message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or "invalid argument")

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(DomainError):
    """The named resource does not exist."""


class FailedPrecondition(DomainError):
    """The resource is not in a state that allows the operation."""


class PermissionDenied(DomainError):
    """The caller is known but lacks the right."""


class Unauthenticated(DomainError):
    """The caller could not be identified."""


class ResourceExhausted(DomainError):
    """A limit was reached; `retry_after` seconds is a hint for the caller."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (the database) is down; the call may be retried as is,
    after `retry_after` seconds when the cause says how long (else None)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Unimplemented(DomainError):
    """The capability is not built yet."""
