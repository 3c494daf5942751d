"""The fault proxy against a real tiny upstream: it forwards faithfully, and each fault has the
effect a subscriber would see from a misbehaving network or publisher."""

from __future__ import annotations

import collections
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from faultproxy import ALL_FAULTS, Fault, FaultProxy

FEED = "/v1/exchange/feed"
# Whatever a transport failure looks like to httpx when a connection ends early.
BROKEN = (httpx.RemoteProtocolError, httpx.ReadError)


class Upstream:
    """A publisher stand-in: JSON feed pages (gzip when asked), an echo, a chunked answer."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                with upstream._lock:
                    upstream.counts[url.path] += 1
                    seq = upstream.counts[url.path]
                if url.path == "/chunked":
                    self._chunked([b"first,", b"second,", b"third"])
                    return
                cursor = int(parse_qs(url.query).get("cursor", ["0"])[0])
                page = {
                    "cursor": cursor,
                    "seq": seq,
                    "authorization": self.headers.get("Authorization"),
                    "items": [{"id": cursor + i, "hash": "ab" * 32} for i in range(40)],
                }
                self._send(json.dumps(page).encode())

            def do_POST(self) -> None:
                with upstream._lock:
                    upstream.counts[self.path] += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                echo = {"body": body.decode(), "content_type": self.headers["Content-Type"]}
                self._send(json.dumps(echo).encode(), status=201)

            def _send(self, body: bytes, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    body = gzip.compress(body)
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunked(self, chunks: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in [*chunks, b""]:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url, timeout_delay=0.3, delay=0.3) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=5) as http_client:
        yield http_client


def test_forwards_faithfully(upstream: Upstream, proxy: FaultProxy, client: httpx.Client) -> None:
    got = client.get(
        FEED,
        params={"cursor": 7, "limit": 40},
        headers={"Authorization": "Bearer s3cret", "Accept-Encoding": "gzip"},
    )
    assert got.status_code == 200
    assert got.headers["content-encoding"] == "gzip"  # passed through, not decoded
    assert got.json()["cursor"] == 7
    assert got.json()["authorization"] == "Bearer s3cret"

    plain = client.get(FEED, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.json()["seq"] == 2

    posted = client.post("/v1/exchange/ack", json={"cursor": 9})
    assert posted.status_code == 201
    assert json.loads(posted.json()["body"]) == {"cursor": 9}
    assert posted.json()["content_type"] == "application/json"

    # A chunked upstream answer arrives whole, re-framed with a Content-Length.
    chunked = client.get("/chunked")
    assert chunked.text == "first,second,third"
    assert chunked.headers["content-length"] == str(len("first,second,third"))
    assert "transfer-encoding" not in chunked.headers

    stats = proxy.stats
    assert (stats.requests, stats.forwarded, stats.upstream_errors) == (4, 4, 0)
    assert not stats.faults
    assert upstream.counts[FEED] == 2


def test_reset_answers_nothing(upstream: Upstream, proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.inject("reset")
    with pytest.raises(BROKEN):
        client.get(FEED)
    assert upstream.counts[FEED] == 0
    assert client.get(FEED).status_code == 200  # one request only
    assert proxy.stats.faults == {"reset": 1}


def test_error_statuses_are_not_forwarded(
    upstream: Upstream, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.inject(Fault.ERROR500)
    proxy.inject("error503")
    failed = client.get(FEED)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    busy = client.get(FEED)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert upstream.counts[FEED] == 0
    assert client.get(FEED).status_code == 200  # the connection was kept alive
    assert proxy.stats.faults == {"error500": 1, "error503": 1}


def test_timeout_holds_then_closes(
    upstream: Upstream, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.inject("timeout")
    start = time.monotonic()
    with pytest.raises(BROKEN):
        client.get(FEED)
    assert time.monotonic() - start >= 0.3
    assert upstream.counts[FEED] == 0


def test_timeout_outlasts_a_client_but_not_close(upstream: Upstream) -> None:
    proxy = FaultProxy(upstream.url)  # the default, long hold
    try:
        proxy.inject("timeout")
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(proxy.url + FEED, timeout=0.2)
    finally:
        start = time.monotonic()
        proxy.close()
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_truncate_cuts_the_body_short(
    upstream: Upstream, proxy: FaultProxy, client: httpx.Client, encoding: str
) -> None:
    proxy.inject("truncate")
    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|without sending complete"):
        client.get(FEED, headers={"Accept-Encoding": encoding})
    assert upstream.counts[FEED] == 1  # the publisher did answer
    assert client.get(FEED, headers={"Accept-Encoding": encoding}).json()["seq"] == 2


def test_duplicate_forwards_twice_and_answers_the_first(
    upstream: Upstream, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.inject("duplicate")
    assert client.get(FEED, params={"cursor": 3}).json()["seq"] == 1
    assert upstream.counts[FEED] == 2
    assert client.get(FEED).json()["seq"] == 3
    assert proxy.stats.forwarded == 3


def test_replay_answers_the_last_page_for_the_path(
    upstream: Upstream, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.inject("replay")  # nothing to replay yet: forwarded, not counted
    assert client.get(FEED, params={"cursor": 0}).json()["cursor"] == 0
    assert not proxy.stats.faults

    proxy.inject("replay")
    stale = client.get(FEED, params={"cursor": 40}, headers={"Accept-Encoding": "gzip"})
    assert stale.json()["cursor"] == 0  # the earlier page, query notwithstanding
    assert upstream.counts[FEED] == 1
    assert proxy.stats.faults == {"replay": 1}


def test_garbage_is_not_json(upstream: Upstream, proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.inject("garbage")
    got = client.get(FEED)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        got.json()
    assert upstream.counts[FEED] == 0


def test_delay_forwards_late(upstream: Upstream, proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.inject("delay")
    start = time.monotonic()
    assert client.get(FEED).json()["seq"] == 1
    assert time.monotonic() - start >= 0.3


def test_injected_faults_match_by_prefix_in_order(
    upstream: Upstream, proxy: FaultProxy, client: httpx.Client
) -> None:
    proxy.inject("error500", count=2)
    proxy.inject("error503")
    proxy.inject("garbage", path_prefix="/chunked")
    assert client.get("/chunked").status_code == 200  # garbage: not JSON, but 200
    assert client.get("/other").status_code == 200  # outside every prefix
    assert [client.get(FEED).status_code for _ in range(4)] == [500, 500, 503, 200]
    faults = [fault for _, _, fault in proxy.stats.history]
    assert faults == ["garbage", None, "error500", "error500", "error503", None]

    proxy.inject("error500", count=3)
    proxy.clear()
    assert client.get(FEED).status_code == 200


def _outcomes(upstream: Upstream, seed: int) -> list[str | None]:
    kinds = ("error500", "error503", "garbage", "duplicate", "replay", "delay")
    with FaultProxy(upstream.url, delay=0.01) as proxy, httpx.Client(base_url=proxy.url) as client:
        proxy.random_faults(0.5, seed=seed, kinds=kinds)
        for cursor in range(30):
            client.get(FEED, params={"cursor": cursor})
            client.get("/other")
        return [fault for _, target, fault in proxy.stats.history if target.startswith(FEED)]


def test_random_faults_are_reproducible(upstream: Upstream) -> None:
    first = _outcomes(upstream, seed=11)
    assert first == _outcomes(upstream, seed=11)
    assert first != _outcomes(upstream, seed=12)
    assert 5 < first.count(None) < 25
    assert len(set(first) - {None}) >= 3


def test_random_faults_spare_other_paths_and_turn_off(
    proxy: FaultProxy, client: httpx.Client
) -> None:
    assert set(ALL_FAULTS) >= {Fault.RESET, Fault.TIMEOUT}
    proxy.random_faults(1.0, seed=1, kinds=["error503"])
    assert client.get("/other").status_code == 200
    assert client.get(FEED).status_code == 503
    proxy.random_faults(0, seed=1)
    assert client.get(FEED).status_code == 200


def test_cut_refuses_and_drops_then_restore(upstream: Upstream) -> None:
    with FaultProxy(upstream.url) as proxy:
        port = proxy.port
        proxy.inject("timeout")  # a request held open across the cut
        errors: list[Exception] = []

        def held() -> None:
            try:
                httpx.get(proxy.url + FEED, timeout=5)
            except httpx.TransportError as exc:
                errors.append(exc)

        thread = threading.Thread(target=held)
        thread.start()
        deadline = time.monotonic() + 2
        while not proxy.stats.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.cut()
        thread.join(timeout=2)
        assert errors and isinstance(errors[0], BROKEN)

        with pytest.raises(httpx.ConnectError):
            httpx.get(proxy.url + FEED, timeout=2)
        proxy.restore()
        assert proxy.port == port
        assert httpx.get(proxy.url + FEED, timeout=2).json()["seq"] == 1


def test_unreachable_upstream_is_a_502() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{placeholder.getsockname()[1]}"  # bound, never listening
        with FaultProxy(dead) as proxy:
            got = httpx.get(proxy.url + FEED, timeout=2)
    assert got.status_code == 502
    assert got.json()["error"]["code"] == "bad_gateway"
    assert proxy.stats.upstream_errors == 1


def test_close_is_quick_and_idempotent(upstream: Upstream) -> None:
    proxy = FaultProxy(upstream.url)
    with httpx.Client(base_url=proxy.url) as client:
        client.get(FEED)  # leaves a kept-alive connection open on the proxy
        start = time.monotonic()
        proxy.close()
        proxy.close()
    assert time.monotonic() - start < 1
    assert not [t for t in threading.enumerate() if t.name.startswith("faultproxy")]
    with pytest.raises(ValueError, match="http://"):
        FaultProxy("https://127.0.0.1:1")
