"""Who a caller is: forwarded addresses believed only from trusted proxies,
the right-most untrusted hop as the client, and the audit's record of the
whole chain; and the audit throttle that aggregates repeated refusals."""

from __future__ import annotations

import pytest

from uba.domain.errors import InvalidArgument
from uba.domain.security import MAX_PEER_TEXT, AuditThrottle, CallOrigin, parse_networks, peer_host


def test_peer_hosts_of_grpc_peer_strings():
    assert peer_host("ipv4:10.1.2.3:5555") == "10.1.2.3"
    assert peer_host("ipv6:[::1]:5555") == "::1"
    assert peer_host("unix:/run/uba.sock") == "unix:/run/uba.sock"


def test_an_untrusted_peer_is_its_own_client_whatever_it_forwards():
    origin = CallOrigin.of("ipv4:127.0.0.1:5", "203.0.113.9, 198.51.100.1")
    assert origin.client == "127.0.0.1" and not origin.via_proxy
    assert "xff(untrusted)=203.0.113.9, 198.51.100.1" in origin.describe()


def test_the_gateway_names_the_client_in_the_last_hop():
    origin = CallOrigin.of("ipv4:127.0.0.1:5", "6.6.6.6, 192.0.2.7", trusted_peer=True)
    assert origin.client == "192.0.2.7" and origin.via_proxy
    assert origin.describe() == "ipv4:127.0.0.1:5 client=192.0.2.7 xff=6.6.6.6, 192.0.2.7"


def test_trusted_hops_are_skipped_from_the_right():
    trusted = parse_networks("10.0.0.0/8 127.0.0.1")
    origin = CallOrigin.of(
        "ipv4:127.0.0.1:5", "6.6.6.6, 192.0.2.7, 10.1.1.1, 10.2.2.2", trusted=trusted
    )
    assert origin.client == "192.0.2.7"
    # Every hop trusted: the left-most one is the client.
    assert (
        CallOrigin.of("ipv4:10.0.0.1:5", "10.3.3.3, 10.1.1.1", trusted=trusted).client == "10.3.3.3"
    )
    # A peer outside the trusted networks is not believed.
    assert CallOrigin.of("ipv4:192.0.2.1:5", "6.6.6.6", trusted=trusted).client == "192.0.2.1"


def test_a_long_chain_keeps_its_right_most_hops_in_the_audit():
    chain = ", ".join(f"198.51.100.{i % 250}" for i in range(400)) + ", 192.0.2.7"
    text = CallOrigin.of("ipv4:127.0.0.1:5", chain, trusted_peer=True).describe()
    assert (
        len(text) <= MAX_PEER_TEXT and text.endswith(", 192.0.2.7") and "client=192.0.2.7" in text
    )


def test_bad_trusted_proxy_settings_name_the_setting():
    with pytest.raises(InvalidArgument) as info:
        parse_networks("10.0.0.0/8, not-an-address")
    assert info.value.violations[0].field == "trusted_proxies"


def test_the_audit_throttle_writes_the_first_then_one_per_period_with_the_count_left_out():
    now = [0.0]
    throttle = AuditThrottle(every=60.0, clock=lambda: now[0])
    assert throttle.admit("k") == 0
    assert [throttle.admit("k") for _ in range(5)] == [None] * 5
    assert throttle.admit("other") == 0
    now[0] = 61.0
    assert throttle.admit("k") == 5
    assert throttle.admit("k") is None
