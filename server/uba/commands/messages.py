"""Simulated domain events as contract messages, built by the client library
(uba_client) as any other client's would be: `uba demo` and `uba evaluate`
reach the server only through the client library and the contract."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uba.domain.events import ActivityEvent
    from uba.v1 import events_pb2

# Activity types added to the contract separately; left out when it lacks them.
MFA_TYPES = ("mfa_challenge", "mfa_approved", "mfa_denied")


def mfa_sendable() -> bool:
    """Whether this contract has the MFA activity types."""
    from uba_client import events as ev

    try:
        for name in MFA_TYPES:
            ev.activity_type(name)
    except ValueError:
        return False
    return True


def to_message(simulated: ActivityEvent) -> events_pb2.ActivityEvent:
    """A simulated event as the contract's ActivityEvent, built by the client
    library from its fields, which bear the contract's names."""
    from uba_client import event

    values = {f.name: getattr(simulated, f.name) for f in fields(simulated)}
    values.pop("received_at")  # the server sets it
    return event(
        values.pop("user_id"), values.pop("type").value, values.pop("occurred_at"), **values
    )


def to_messages(
    events: Iterable[ActivityEvent], skip_mfa: bool
) -> Iterator[tuple[events_pb2.ActivityEvent, datetime]]:
    """Messages with their event times, leaving out MFA events when the
    contract lacks them."""
    for e in events:
        if skip_mfa and e.type.value in MFA_TYPES:
            continue
        yield to_message(e), e.occurred_at
