"""Where mirrored entries come from: the :class:`Source` interface and the peer feed.

A source is fetched incrementally from a checkpoint (an opaque cursor the store keeps with the
peer), returns deletions as tombstones (withdrawal events), and can report a digest of a list
for verification. The peer feed of another hashmatch implements it first; NCMEC's and
StopNCII's APIs fit the same shape (a checkpointed delta fetch with tombstones), and a folder
of hash-set files is another (see the README).
"""

from __future__ import annotations

import gzip
import io
from typing import Any, Final, Protocol

import httpx
import orjson

from hashmatch.errors import PeerError, PeerRefused
from hashmatch.exchange.wire import MAX_PAGE_BYTES, Page, parse_page
from hashmatch.matching.policy import ThresholdBounds

#: How long a request may take beyond the long-poll wait before it counts as failed.
REQUEST_SLACK_SECONDS: Final = 15.0
INSTANCE_HEADER: Final = "X-Hashmatch-Instance"
OUTCOMES_PER_REQUEST: Final = 5_000


class Source(Protocol):
    name: str

    def fetch(self, checkpoint: str, limit: int, wait: float) -> Page:
        """The next page after ``checkpoint``, waiting up to ``wait`` seconds for one."""
        ...

    def digest(self, list_name: str) -> dict[str, Any]:
        """``{"count": N, "digest": "<hex>"}`` of the list's live entries at the source."""
        ...

    def send_outcomes(self, items: list[dict[str, Any]]) -> None:
        """Report what this instance's platforms did with the source's entries."""
        ...


class PeerFeed:
    """Another hashmatch's ``/v1/exchange/feed``, read with the key it gave us."""

    def __init__(
        self,
        name: str,
        url: str,
        secret: str,
        *,
        own_instance: str,
        bounds: ThresholdBounds,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self._url = url.rstrip("/")
        self._secret = secret
        self._own_instance = own_instance
        self._bounds = bounds
        self._client = client or httpx.Client(http2=False)

    def close(self) -> None:
        self._client.close()

    def fetch(self, checkpoint: str, limit: int, wait: float) -> Page:
        params = {"cursor": checkpoint, "limit": str(limit), "wait": f"{wait:g}"}
        raw = self._get("/v1/exchange/feed", params, timeout=wait + REQUEST_SLACK_SECONDS)
        return parse_page(raw, self._bounds, limit=limit, own_instance=self._own_instance)

    def digest(self, list_name: str) -> dict[str, Any]:
        raw = self._get("/v1/exchange/digest", {"list": list_name}, timeout=120.0)
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("count"), int)
            or not isinstance(raw.get("digest"), str)
        ):
            raise PeerRefused("digest: not {count, digest}")
        return raw

    def send_outcomes(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), OUTCOMES_PER_REQUEST):
            body = orjson.dumps({"entries": items[start : start + OUTCOMES_PER_REQUEST]})
            try:
                response = self._client.post(
                    self._url + "/v1/exchange/outcomes",
                    content=body,
                    headers={**self._headers(), "Content-Type": "application/json"},
                    timeout=60.0,
                )
            except httpx.HTTPError as exc:
                raise PeerError(f"outcomes: {type(exc).__name__}: {_clip(str(exc))}") from None
            if response.status_code != 200:
                message = _error_message(response.content)
                raise PeerError(f"outcomes: HTTP {response.status_code}: {message}")

    def _headers(self) -> dict[str, str]:
        return {
            # Never logged: httpx's errors name the URL, not the headers.
            "Authorization": f"Bearer {self._secret}",
            "Accept-Encoding": "gzip",
            INSTANCE_HEADER: self._own_instance,
        }

    def _get(self, path: str, params: dict[str, str], *, timeout: float) -> Any:
        headers = self._headers()
        try:
            with self._client.stream(
                "GET", self._url + path, params=params, headers=headers, timeout=timeout
            ) as response:
                body = _read_capped(response)
        except httpx.HTTPError as exc:
            raise PeerError(f"{path}: {type(exc).__name__}: {_clip(str(exc))}") from None
        if response.status_code != 200:
            raise PeerError(f"{path}: HTTP {response.status_code}: {_error_message(body)}")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PeerRefused(f"{path}: not JSON ({_clip(str(exc))})") from None


def _read_capped(response: httpx.Response) -> bytes:
    """The body, decompressed, refusing to hold more than :data:`MAX_PAGE_BYTES` of it (a
    peer's gzip bomb stops at the cap, not at our memory's end)."""
    encoding = response.headers.get("content-encoding", "").lower()
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > MAX_PAGE_BYTES:
            raise PeerRefused(f"page over {MAX_PAGE_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding == "gzip":
        try:
            decompressor = gzip.GzipFile(fileobj=io.BytesIO(body))
            body = decompressor.read(MAX_PAGE_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise PeerRefused(f"bad gzip body ({_clip(str(exc))})") from None
        if len(body) > MAX_PAGE_BYTES:
            raise PeerRefused(f"page over {MAX_PAGE_BYTES} bytes once decompressed")
    elif encoding not in ("", "identity"):
        raise PeerRefused(f"unknown content encoding {encoding[:20]!r}")
    return body


def _error_message(body: bytes) -> str:
    try:
        message = orjson.loads(body)["error"]["message"]
    except Exception:
        return _clip(body[:200].decode("utf-8", "replace"))
    return _clip(str(message))


def _clip(text: str) -> str:
    return text.replace("\n", " ")[:300]
