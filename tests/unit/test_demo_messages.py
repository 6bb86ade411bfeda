"""`uba demo` builds its messages with the client library; they are the
messages the server's own converter makes of the same simulated events."""

from __future__ import annotations

from datetime import UTC, datetime

from uba.api.converters import event_to_pb
from uba.commands.messages import MFA_TYPES, mfa_sendable, to_message
from uba.testing.simulate import simulate
from uba.v1 import events_pb2


def test_demo_messages_equal_the_servers_conversion():
    sim = simulate(users=6, days=4, seed=3, attacks=True, end=datetime(2026, 11, 24, tzinfo=UTC))
    kinds = {e.type.value for e in sim.events}
    assert kinds.issuperset({"login_success", "api_call", "logout"})
    for simulated in sim.events:
        expected = events_pb2.ActivityEvent()
        event_to_pb(simulated, expected)
        assert to_message(simulated) == expected, simulated.event_id


def test_this_contract_has_the_mfa_types():
    assert mfa_sendable()
    assert all(f"ACTIVITY_TYPE_{t.upper()}" in events_pb2.ActivityType.keys() for t in MFA_TYPES)
