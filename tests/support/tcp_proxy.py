"""A TCP proxy between a client and a server, for network faults:
reset_all() resets every open connection (the peers see a RST, as after a
network fault); stall() stops reading from the server's side (what the
client sends still flows), as a frozen peer would, and resume() reads
again; cut() resets every connection and refuses new ones (reset at once)
until mend(). A connection that fails on one side is reset on the other.

    proxy = TcpProxy(server.address)         # connect clients to proxy.address
    proxy.reset_all(); proxy.stall(); proxy.resume(); proxy.cut(); proxy.mend()
    proxy.close()
"""

from __future__ import annotations

import select
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, upstream: str, upstream_receive_buffer: int | None = None):
        """`upstream_receive_buffer`: a small one (far below an HTTP/2 stream
        window) means that, when stalled, what the server may send does not
        all fit in the proxy, so the server's own send buffer holds the rest."""
        self.upstream = upstream
        self.upstream_receive_buffer = upstream_receive_buffer
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.flowing = threading.Event()
        self.flowing.set()
        self.refusing = threading.Event()
        self.upstream_sockets: list[socket.socket] = []  # every connection's server side, in order
        self.resets = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing.is_set():
                _reset(client)
                continue
            host, port = self.upstream.rsplit(":", 1)
            server = socket.socket()
            if self.upstream_receive_buffer:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.upstream_receive_buffer)
            server.settimeout(5)
            try:
                server.connect((host, int(port)))
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self.upstream_sockets.append(server)
                self._open += [client, server]
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:
                watched = [client, server] if self.flowing.is_set() else [client]
                readable, _, _ = select.select(watched, [], [], 0.1)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (server if source is client else client).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for s in (client, server):
                _reset(s)

    def reset_all(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            _reset(s)
        self.resets += 1

    def stall(self) -> None:
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    def cut(self) -> None:
        self.refusing.set()
        self.reset_all()

    def mend(self) -> None:
        self.refusing.clear()

    def close(self) -> None:
        self.flowing.set()
        self.listener.close()
        self.reset_all()


def _reset(s: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    except OSError:
        pass
