"""Count PostgreSQL round trips on the wire: a small TCP proxy between a server under test and
PostgreSQL that reads the frontend (client -> server) stream of the PostgreSQL protocol.

    with WireProxy("postgresql://postgres@127.0.0.1:5432/test") as proxy:
        run the server with DATABASE_URL=proxy.url
        before = proxy.tally.snapshot(); ... requests ...; after = proxy.tally.snapshot()

It counts what the driver really sends, whatever code sent it (cityloop, SQLAlchemy, psycopg,
pipeline mode or not), without patching anything in the process under test.

**The frontend stream.** A connection opens with untyped packets (int32 length including
itself, int32 code): an SSLRequest or GSSENCRequest, which the proxy answers 'N' itself (so the
stream stays readable whatever the client's sslmode; `url` also says sslmode=disable), then
the StartupMessage (protocol 3.x), or a CancelRequest on a connection of its own. After the
startup every message is one type byte + int32 length (including itself, not the type byte) +
payload.

**What is a round trip.** The client stops and waits for the server at:
- 'Q' (simple Query): the client waits for its ReadyForQuery;
- 'S' (Sync): the client waits for its ReadyForQuery. Outside pipeline mode libpq ends
  every extended-protocol statement (Parse/Bind/Describe/Execute) with one; in pipeline mode
  several statements share one Sync;
- 'H' (Flush) when it is not right after a 'Q' or 'S': psycopg sends one in pipeline mode
  when a cursor wants its results before the pipeline is synced, and waits for them. When it
  leaves a pipeline it sends Sync and then Flush, and waits once for both: that Flush is no
  round trip of its own.

Statements are 'E' (Execute) plus 'Q' messages (a 'Q' may carry several statements; drivers
send one); parses are 'P' (Parse) messages: psycopg sends one per unprepared statement, and
none for a statement it has prepared on that connection."""
from __future__ import annotations

import socket
import struct
import threading
from collections import Counter

from sqlalchemy.engine import make_url

__all__ = ["FrontendParser", "ProtocolError", "Tally", "WireProxy", "figures"]

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
_ENCRYPTION_REQUESTS = (SSL_REQUEST, GSSENC_REQUEST)


class ProtocolError(Exception):
    """The stream is not the PostgreSQL frontend protocol this parser reads (TLS, say)."""


class Tally:
    """Message counts summed over every connection of one proxy (thread-safe).

    Keys: one per message type byte ('Q', 'S', 'P', ...), and 'round_trips', 'startup',
    'encryption_request', 'cancel'."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


def figures(before: Counter[str], after: Counter[str], per: int) -> dict[str, float]:
    """Round trips, statements and parses per unit of work between two snapshots."""
    d = after - before
    per = max(1, per)
    return {"round_trips": d["round_trips"] / per, "statements": (d["E"] + d["Q"]) / per, "parses": d["P"] / per}


class FrontendParser:
    """Reads one connection's client -> server byte stream, fed in chunks of any size, and
    counts its messages into a Tally."""

    def __init__(self, tally: Tally | None = None) -> None:
        self.tally = tally if tally is not None else Tally()
        self.in_startup = True       # untyped packets until the StartupMessage
        self._head = bytearray()
        self._skip = 0               # payload bytes of the current message still to pass
        self._prev = ""              # type of the previous typed message

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            need = 8 if self.in_startup else 5
            k = min(need - len(self._head), n - i)
            self._head += data[i:i + k]
            i += k
            if len(self._head) < need:
                return
            if self.in_startup:
                length, code = struct.unpack("!ii", self._head)
                self._startup(code, length)
                body = length - 8
            else:
                kind = chr(self._head[0])
                length = struct.unpack_from("!i", self._head, 1)[0]
                if length < 4:
                    raise ProtocolError(f"message {kind!r} with length {length}")
                self._message(kind)
                body = length - 4
            self._head.clear()
            self._skip = body

    def _startup(self, code: int, length: int) -> None:
        if length < 8 or length > 10_000:
            raise ProtocolError(f"startup packet of length {length} (a TLS stream?)")
        if code in _ENCRYPTION_REQUESTS:
            self.tally.add("encryption_request")       # the next packet is untyped again
        elif code == CANCEL_REQUEST:
            self.tally.add("cancel")
        elif code >> 16 == 3:
            self.tally.add("startup")
            self.in_startup = False
        else:
            raise ProtocolError(f"unknown startup code {code}")

    def _message(self, kind: str) -> None:
        if kind in "QS" or (kind == "H" and self._prev not in ("Q", "S")):
            self.tally.add("round_trips")
        self.tally.add(kind)
        self._prev = kind


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed during startup")
        buf += chunk
    return buf


class WireProxy:
    """A TCP proxy on 127.0.0.1 in front of the PostgreSQL server of `url`, counting every
    connection's frontend messages into `tally`. `self.url` is `url` pointed at the proxy
    (same scheme, user and database; sslmode=disable). Threads: one accepting, two per
    connection."""

    def __init__(self, url: str) -> None:
        target = make_url(url)
        self.target = (target.host or "127.0.0.1", target.port or 5432)
        self.tally = Tally()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = target.set(host="127.0.0.1", port=self.port).update_query_dict(
            {"sslmode": "disable"}).render_as_string(hide_password=False)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.errors: list[str] = []
        threading.Thread(target=self._accept, name="pgwire-accept", daemon=True).start()

    def __enter__(self) -> WireProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            socks, self._open = list(self._open), set()
        for s in socks:
            self._shut(s)

    @staticmethod
    def _shut(s: socket.socket) -> None:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="pgwire-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = None
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = socket.create_connection(self.target)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    raise ConnectionError("proxy closed")
                self._open.update((client, server))
            parser = FrontendParser(self.tally)
            while True:      # encryption requests are answered here: 'N', go on in plain text
                head = _recv_exact(client, 8)
                length, code = struct.unpack("!ii", head)
                if length == 8 and code in _ENCRYPTION_REQUESTS:
                    parser.feed(head)
                    client.sendall(b"N")
                    continue
                break
            parser.feed(head)
            server.sendall(head)
            back = threading.Thread(target=self._pump, args=(server, client, None), name="pgwire-back", daemon=True)
            back.start()
            self._pump(client, server, parser)
            back.join()
        except (OSError, ProtocolError) as exc:
            if not self._closed:
                self.errors.append(f"{exc.__class__.__name__}: {exc}")
        finally:
            with self._lock:
                self._open.discard(client)
                if server is not None:
                    self._open.discard(server)
            self._shut(client)
            if server is not None:
                self._shut(server)

    def _pump(self, src: socket.socket, dst: socket.socket, parser: FrontendParser | None) -> None:
        """Forward src -> dst until either side closes; then close the other direction too."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if parser is not None:
                    parser.feed(data)   # counted before the server can answer it
                dst.sendall(data)
        except OSError:
            pass
        except ProtocolError as exc:
            self.errors.append(f"ProtocolError: {exc}")
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
