"""A TCP forwarder to a real service that a test can cut, as if the service went away."""

from __future__ import annotations

import socket
import threading

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<upstream_port>``.

    ``cut`` drops every connection and refuses new ones until ``resume`` (a service outage and
    its return, on the same address); ``stop`` closes the listener for good.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.alive = True
        self.cut_off = False
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while self.alive and (data := src.recv(65536)):
                dst.sendall(data)
        except OSError:
            pass

    def _accept(self) -> None:
        while self.alive:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _close_connections(self) -> None:
        conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``resume``."""
        self.cut_off = True
        self._close_connections()

    def resume(self) -> None:
        """Forward new connections again."""
        self.cut_off = False

    def stop(self) -> None:
        """Close the listener and every connection."""
        self.alive = False
        self.listener.close()
        self._close_connections()
