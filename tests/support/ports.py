"""Free loopback ports for the servers and receivers a test starts."""

from __future__ import annotations

import socket

# Ports handed out in this process: the kernel may give a port just
# released (by this function) out again, and two listeners of one
# nats-server were once given the same port.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port free now, never handed out before in this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
