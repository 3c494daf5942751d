"""An HTTP/1.1 reverse proxy that fails on purpose, for end-to-end tests between two instances.

It sits between a subscriber and a publisher, forwards requests faithfully, and on the requests a
test picks it resets, stalls, truncates, duplicates, replays or garbles them; it can also take the
publisher out of reach (``cut``) and bring it back on the same port (``restore``)::

    with FaultProxy("http://127.0.0.1:8001") as proxy:
        proxy.inject("truncate", count=2)  # the next two /v1/exchange/ requests
        proxy.random_faults(0.2, seed=7, kinds=("reset", "error503"))  # then a seeded 20 %
        ...
        assert proxy.stats.faults["truncate"] == 2

Each request and each upstream response is read whole (http.client undoes chunking, never
gzip) and the response is re-sent with a Content-Length, so a fault acts on a complete message
and the bytes the client gets are the bytes the publisher sent. One upstream connection per
request: nothing half-used survives a cut. As a script: ``python tests/faultproxy.py TARGET``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http
import http.client
import io
import json
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from urllib.parse import urlsplit


class Fault(StrEnum):
    RESET = "reset"  # close the client connection with an RST, without answering
    ERROR500 = "error500"  # answer 500 without forwarding
    ERROR503 = "error503"  # answer 503 with Retry-After: 1 without forwarding
    TIMEOUT = "timeout"  # answer nothing for timeout_delay seconds, then close
    TRUNCATE = "truncate"  # forward; send the full Content-Length but half the body; close
    DUPLICATE = "duplicate"  # forward twice (the publisher sees a retry), answer the first
    REPLAY = "replay"  # answer the last response for this method and path, any query
    GARBAGE = "garbage"  # answer 200 application/json whose body is not JSON
    DELAY = "delay"  # forward after `delay` seconds


ALL_FAULTS: tuple[Fault, ...] = tuple(Fault)
DEFAULT_PREFIX = "/v1/exchange/"

# Headers about one connection, not the message: never passed through (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"}
    | {"upgrade", "content-length"}  # Content-Length: recomputed from the body actually sent
)
_NO_BODY_STATUSES = frozenset({204, 304})
_MAX_LINE = 65536
# Starts like a feed page so a lenient parser gets some way in before it fails.
_GARBAGE = b'{"items": [{"seq": 1, "hash": <fault proxy garbage>'


@dataclass(frozen=True)
class _Request:
    method: str
    target: str  # path and query, as the client sent them
    headers: tuple[tuple[str, str], ...]
    body: bytes | None  # None: the client sent no body framing at all
    keep_alive: bool

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def encode(self, *, keep_alive: bool, head: bool = False, truncate: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{n}: {v}" for n, v in self.headers if n.lower() not in _HOP_BY_HOP]
        body = b"" if head else self.body
        if head:
            # A HEAD answer announces the length a GET would have: keep the publisher's.
            lines += [f"{n}: {v}" for n, v in self.headers if n.lower() == "content-length"]
        elif self.status >= 200 and self.status not in _NO_BODY_STATUSES:
            # An empty body cannot be cut short: claim one byte and send none.
            claimed = max(len(body), 1) if truncate else len(body)
            lines.append(f"Content-Length: {claimed}")
            if truncate:
                body = body[: len(body) // 2]
        if not keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json_response(
    status: int, code: str, message: str, extra: tuple[tuple[str, str], ...] = ()
) -> _Response:
    # The service's own error envelope, so the client's error path is the one exercised.
    body = json.dumps({"error": {"code": code, "message": f"fault proxy: {message}"}}).encode()
    headers = (("Content-Type", "application/json"), *extra)
    return _Response(status, http.HTTPStatus(status).phrase, headers, body)


@dataclass(frozen=True)
class ProxyStats:
    requests: int  # requests read from clients
    forwarded: int  # requests sent upstream (a duplicate counts twice)
    upstream_errors: int  # upstream unreachable or broken: answered 502
    faults: collections.Counter[str]  # faults applied, by kind
    history: tuple[tuple[str, str, str | None], ...]  # (method, target, fault or None)


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        # Set by cut()/close(): stop holding or delaying, stop serving.
        self.dropped = threading.Event()

    def drop(self) -> None:
        self.dropped.set()
        # shutdown, unlike close, wakes the thread blocked reading this socket.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self, *, rst: bool = False) -> None:
        if rst:
            # Linger 0: close() discards the socket with an RST instead of a FIN.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The reader holds a reference to the descriptor: release it so close() really closes.
        self.reader.close()
        self.sock.close()


class FaultProxy:
    def __init__(
        self,
        target: str,
        *,
        port: int = 0,
        timeout_delay: float = 35.0,
        delay: float = 0.5,
        upstream_timeout: float = 120.0,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"target must be http://HOST:PORT, not {target!r}")
        self.target = (parts.hostname, parts.port or 80)
        self.timeout_delay = timeout_delay
        self.delay = delay
        # Longer than any long-poll `wait`: a slow answer is the publisher's, not a fault.
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[Fault, str]] = collections.deque()
        self._random: tuple[float, random.Random, tuple[Fault, ...], str] | None = None
        self._last: dict[tuple[str, str], _Response] = {}
        self._requests = 0
        self._forwarded = 0
        self._upstream_errors = 0
        self._faults: collections.Counter[str] = collections.Counter()
        self._history: list[tuple[str, str, str | None]] = []
        self._clients: set[_Client] = set()
        self._upstreams: set[http.client.HTTPConnection] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.port = self._listen(port)
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- scheduling ---------------------------------------------------------------------------

    def inject(self, fault: Fault | str, count: int = 1, path_prefix: str = DEFAULT_PREFIX) -> None:
        """Apply `fault` to the next `count` requests whose path starts with `path_prefix`.

        Queued faults apply in the order injected, each to the first request it matches, and
        before any random fault."""
        kind = Fault(fault)
        with self._lock:
            self._queue.extend((kind, path_prefix) for _ in range(count))

    def random_faults(
        self,
        rate: float,
        seed: int,
        kinds: Iterable[Fault | str] = ALL_FAULTS,
        path_prefix: str = DEFAULT_PREFIX,
    ) -> None:
        """Fault each matching request with probability `rate`, the kind drawn from `kinds`.

        The draws come from one RNG seeded with `seed`, in the order requests arrive: the same
        sequence of requests meets the same faults. A rate of 0 turns random faults off."""
        chosen = tuple(Fault(kind) for kind in kinds)
        if rate > 0 and not chosen:
            raise ValueError("random_faults needs at least one kind")
        with self._lock:
            self._random = (rate, random.Random(seed), chosen, path_prefix) if rate > 0 else None

    def clear(self) -> None:
        """Forget queued and random faults: forward everything from now on."""
        with self._lock:
            self._queue.clear()
            self._random = None

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                requests=self._requests,
                forwarded=self._forwarded,
                upstream_errors=self._upstream_errors,
                faults=collections.Counter(self._faults),
                history=tuple(self._history),
            )

    # --- reachability -------------------------------------------------------------------------

    def cut(self) -> None:
        """Refuse new connections and drop every open one: the publisher is out of reach."""
        with self._lock:
            if self._listener is not None:
                # shutdown wakes the accept() in flight; close alone may not.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            clients = list(self._clients)
            upstreams = list(self._upstreams)
        for client in clients:
            client.drop()
        for conn in upstreams:
            # Unblocks a thread waiting on a long poll; it then finds its client dropped.
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        with self._lock:
            if self._listener is None and not self._stop.is_set():
                self._listen(self.port)

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=2)
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + 2
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- serving ------------------------------------------------------------------------------

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        # Polled, so the loop notices close() even with no client arriving.
        listener.settimeout(0.05)
        self._listener = listener
        return int(listener.getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stop.wait(0.05)
                continue
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            sock.settimeout(None)
            client = _Client(sock)
            with self._lock:
                # Accepted just as cut() ran: it must not outlive the cut.
                current = self._listener is listener and not self._stop.is_set()
                if current:
                    self._clients.add(client)
                    thread = threading.Thread(
                        target=self._serve, args=(client,), name="faultproxy-conn", daemon=True
                    )
                    self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            if current:
                thread.start()
            else:
                client.close()

    def _serve(self, client: _Client) -> None:
        try:
            while not client.dropped.is_set():
                request = _read_request(client.reader)
                if request is None or not self._handle(client, request):
                    return
        except (OSError, ValueError, http.client.HTTPException):
            return  # the client went away or sent nonsense: drop it
        finally:
            with self._lock:
                self._clients.discard(client)
            client.close()

    def _pick(self, request: _Request) -> tuple[Fault | None, _Response | None]:
        """Decide the fault for a request, and count it, under one lock: arrival order rules."""
        with self._lock:
            self._requests += 1
            fault: Fault | None = None
            for i, (kind, prefix) in enumerate(self._queue):
                if request.path.startswith(prefix):
                    fault = kind
                    del self._queue[i]
                    break
            if fault is None and self._random is not None:
                rate, rng, kinds, prefix = self._random
                if request.path.startswith(prefix) and rng.random() < rate:
                    fault = rng.choice(kinds)
            stale = None
            if fault is Fault.REPLAY:
                stale = self._last.get((request.method, request.path))
                if stale is None:
                    fault = None  # nothing to replay yet: forwarded, and not counted
            if fault is not None:
                self._faults[fault.value] += 1
            self._history.append((request.method, request.target, fault.value if fault else None))
            return fault, stale

    def _handle(self, client: _Client, request: _Request) -> bool:
        """Answer one request; False when the connection must not serve another."""
        fault, stale = self._pick(request)
        if fault is Fault.RESET:
            client.close(rst=True)
            return False
        if fault is Fault.TIMEOUT:
            client.dropped.wait(self.timeout_delay)
            return False
        if fault is Fault.DELAY and client.dropped.wait(self.delay):
            return False
        if fault is Fault.ERROR500:
            response = _json_response(500, "internal_error", "injected 500")
        elif fault is Fault.ERROR503:
            response = _json_response(503, "unavailable", "injected 503", (("Retry-After", "1"),))
        elif fault is Fault.GARBAGE:
            response = _Response(200, "OK", (("Content-Type", "application/json"),), _GARBAGE)
        elif stale is not None:
            response = stale
        else:
            response = self._forward(client, request)
            if fault is Fault.DUPLICATE:
                self._forward(client, request)
        keep_alive = request.keep_alive and fault is not Fault.TRUNCATE
        client.sock.sendall(
            response.encode(
                keep_alive=keep_alive,
                head=request.method == "HEAD",
                truncate=fault is Fault.TRUNCATE,
            )
        )
        return keep_alive

    def _forward(self, client: _Client, request: _Request) -> _Response:
        host, port = self.target
        conn = http.client.HTTPConnection(host, port, timeout=self.upstream_timeout)
        with self._lock:
            self._upstreams.add(conn)
            self._forwarded += 1
        try:
            conn.connect()
            # cut() marks clients before it shuts upstreams: a connect it missed is caught here.
            if client.dropped.is_set():
                raise ConnectionAbortedError("proxy cut")
            # Host and Accept-Encoding pass through as the client sent them, like every header.
            conn.putrequest(
                request.method, request.target, skip_host=True, skip_accept_encoding=True
            )
            for name, value in request.headers:
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            if request.body is not None:
                conn.putheader("Content-Length", str(len(request.body)))
            conn.putheader("Connection", "close")
            conn.endheaders(request.body)
            upstream = conn.getresponse()
            response = _Response(
                upstream.status, upstream.reason, tuple(upstream.getheaders()), upstream.read()
            )
        except (OSError, http.client.HTTPException) as exc:
            with self._lock:
                self._upstream_errors += 1
            return _json_response(502, "bad_gateway", f"upstream failed: {exc!r}")
        finally:
            conn.close()
            with self._lock:
                self._upstreams.discard(conn)
        with self._lock:
            self._last[(request.method, request.path)] = response
        return response


def _read_request(reader: io.BufferedReader) -> _Request | None:
    line = reader.readline(_MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # tolerated before a request line (RFC 9112 §2.2)
        line = reader.readline(_MAX_LINE + 1)
    if not line:
        return None  # the client closed between requests
    if len(line) > _MAX_LINE:
        raise ValueError("request line too long")
    method, target, version = line.decode("latin-1").split()
    message = http.client.parse_headers(reader)
    tokens = {t.strip().lower() for t in ",".join(message.get_all("Connection", [])).split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    # Headers the Connection header names are about this hop too.
    headers = tuple((n, v) for n, v in message.items() if n.lower() not in tokens)
    body: bytes | None = None
    if "chunked" in message.get("Transfer-Encoding", "").lower():
        body = _read_chunked(reader)
    elif message.get("Content-Length") is not None:
        length = int(message["Content-Length"])
        body = reader.read(length)
        if len(body) != length:
            raise ValueError("request body cut short")
    return _Request(method, target, headers, body, keep_alive)


def _read_chunked(reader: io.BufferedReader) -> bytes:
    chunks = []
    while True:
        size = int(reader.readline(_MAX_LINE + 1).split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        chunk = reader.read(size)
        if len(chunk) != size or reader.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise ValueError("request chunk cut short")
        chunks.append(chunk)
    while reader.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
        pass  # trailers: dropped, like every hop-by-hop field
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An HTTP reverse proxy that fails on purpose.")
    parser.add_argument("target", help="http://HOST:PORT to forward to")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="random fault probability")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(ALL_FAULTS))
    parser.add_argument("--path-prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--timeout-delay", type=float, default=35.0)
    args = parser.parse_args(argv)
    with FaultProxy(args.target, port=args.port, timeout_delay=args.timeout_delay) as proxy:
        proxy.random_faults(args.rate, args.seed, args.kinds.split(","), args.path_prefix)
        print(proxy.url, flush=True)
        # SIGTERM too, so a test that started this as a subprocess can end it cleanly.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
        print(dict(proxy.stats.faults), flush=True)


if __name__ == "__main__":
    main()
