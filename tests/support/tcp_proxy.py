"""A TCP proxy the tests control: forward, cut (refused) or freeze (silent) the path to a real server.

``cut()`` is what a client sees when the server's host is gone: new connections are refused and every open one is
closed both ways. ``freeze()`` is a frozen network path or a hung server: every socket stays open, new connections are
accepted, and no byte moves either way, so a client with no read deadline waits forever. ``restore()`` goes back to
normal forwarding (after a cut, on the SAME port, so clients configured with it reconnect by themselves).

Every thread is a daemon and every wait is bounded (select with a short timeout), so a forgotten proxy never holds up
the test process.
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType

_TICK = 0.05  # how often a stalled thread looks at the proxy's state again
_CONNECT_TIMEOUT = 2.0
_SEND_TIMEOUT = 5.0


class _Pair:
    """One client connection and, once forwarded, its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class TcpProxy:
    """A proxy on a free 127.0.0.1 port to ``target_host:target_port``, with cut / freeze / restore."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._forwarding = threading.Event()  # cleared while frozen
        self._forwarding.set()
        self._closed = threading.Event()
        self._listener: socket.socket | None = None
        self._reserved: socket.socket | None = None  # the port, bound and not listening, while cut
        self._accept_thread: threading.Thread | None = None
        self.port = 0
        self._listen()

    # -- the controls ------------------------------------------------------------------------------------------

    def cut(self) -> None:
        """Refuse: stop listening and close every connection both ways.

        The port stays bound, not listening (a connection to it is refused): left free, any process on the machine
        could get it as the local port of an outgoing connection meanwhile, and :meth:`restore` could not listen on
        it again ("address already in use", seen under a loaded CI run).
        """
        self._forwarding.set()
        self._stop_listening(keep_port=not self._closed.is_set())
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            pair.close()

    def freeze(self) -> None:
        """Go silent: keep every socket open, forward nothing either way; new connections are accepted, not forwarded."""
        self._forwarding.clear()

    def restore(self) -> None:
        """Forward normally again (after a cut, listen again on the same port)."""
        self._forwarding.set()
        if self._listener is None and not self._closed.is_set():
            self._listen()

    def close(self) -> None:
        """Stop everything; idempotent."""
        self._closed.set()
        self.cut()

    def connections(self) -> int:
        """How many client connections are open through the proxy now."""
        with self._lock:
            return sum(1 for pair in self._pairs if not pair.closed)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    # -- the machinery -----------------------------------------------------------------------------------------

    def _bound(self) -> socket.socket:
        bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bound.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bound.bind(("127.0.0.1", self.port))
        return bound

    def _listen(self) -> None:
        listener, self._reserved = self._reserved or self._bound(), None
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"tcp-proxy-{self.port}")
        self._accept_thread.start()

    def _stop_listening(self, keep_port: bool) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            if not keep_port and self._reserved is not None:
                self._reserved.close()
                self._reserved = None
            return
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        if keep_port:
            self._reserved = self._bound()
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout=2)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                readable, _, _ = select.select([listener], [], [], _TICK)
            except (OSError, ValueError):
                return
            if not readable:
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:
                client.close()
                return
            pair = _Pair(client)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True, name=f"tcp-proxy-pump-{self.port}").start()

    def _pump(self, pair: _Pair) -> None:
        try:
            while not pair.closed:
                if not self._forwarding.is_set():
                    self._forwarding.wait(_TICK)
                    continue
                if pair.upstream is None:
                    pair.upstream = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
                    pair.upstream.settimeout(_SEND_TIMEOUT)
                    pair.client.settimeout(_SEND_TIMEOUT)
                    if pair.closed:  # cut while connecting
                        pair.upstream.close()
                        return
                readable, _, _ = select.select([pair.client, pair.upstream], [], [], _TICK)
                if not self._forwarding.is_set():
                    continue  # frozen between the select and now: leave the bytes where they are
                for source in readable:
                    sink = pair.upstream if source is pair.client else pair.client
                    data = source.recv(65536)
                    if not data:
                        return
                    sink.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            pair.close()
            with self._lock:
                self._pairs.discard(pair)
