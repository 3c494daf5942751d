"""The HTTP API through the real ASGI app (httpx), on a real SQLite store."""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import encode, natural_image
from hashmatch.api.app import create_app
from hashmatch.api.keycache import KeyCache
from hashmatch.config import Settings
from hashmatch.signals import PDQ, hash_bytes
from hashmatch.store import Role, Store, database_url
from services import Service, running_service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running_service("sqlite", tmp_path) as running:
        yield running


def photo(seed: int = 1) -> bytes:
    return encode(natural_image(640, 480, seed=seed), "JPEG", quality=90)


def test_keys_are_required_and_checked(service: Service) -> None:
    for headers in ({}, {"Authorization": "Bearer hm_nope"}, {"Authorization": "Basic x"}):
        response = service.client.get("/v1/lists", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert service.client.get("/healthz").status_code == 200
    assert service.client.get("/readyz").json()["status"] == "ready"


def test_roles_and_organisations(service: Service) -> None:
    matcher_key = service.key("platform", Role.MATCH)
    kcsc = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    ncc = service.key("ncc", Role.CONTRIBUTE, Role.MATCH)
    ncc_admin = service.key("ncc", Role.ADMIN)
    denied = service.client.post(
        "/v1/lists", json={"name": "x", "category": "csam"}, headers=matcher_key
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    created = service.client.post(
        "/v1/lists",
        json={"name": "ncii-kr", "category": "ncii", "jurisdiction": "KR"},
        headers=kcsc,
    )
    assert created.status_code == 201 and created.json()["owner"] == "kcsc"
    assert service.client.get("/v1/lists/ncii-kr", headers=ncc).status_code == 404
    assert service.client.get("/v1/lists", headers=ncc).json() == []
    value = hash_bytes(photo(), [PDQ])[0]
    added = service.client.post(
        "/v1/lists/ncii-kr/entries",
        json={"entries": [{"algorithm": "pdq", "hash": value.hex, "reference": "case-7"}]},
        headers=kcsc,
    )
    assert added.status_code == 200 and added.json()["added"] == 1
    forbidden = service.client.post(
        "/v1/lists/ncii-kr/withdrawals", json={"reason": "x", "references": ["case-7"]}, headers=ncc
    )
    assert forbidden.status_code == 404  # another organisation's list is not even confirmed
    service.follow()
    query = {"hashes": [{"algorithm": "pdq", "value": value.hex}]}
    assert service.client.post("/v1/match/hashes", json=query, headers=ncc).json()["match"] is False
    shared = service.client.patch("/v1/lists/ncii-kr", json={"shared_with": ["ncc"]}, headers=kcsc)
    assert shared.status_code == 200 and shared.json()["shared_with"] == ["ncc"]
    service.follow()
    # An offer: visible to ncc, but not matched until ncc accepts it.
    assert service.client.get("/v1/lists/ncii-kr", headers=ncc).status_code == 200
    offers = service.client.get("/v1/shares", headers=ncc).json()
    assert [(o["list"], o["state"]) for o in offers] == [("ncii-kr", "offered")]
    assert service.client.post("/v1/match/hashes", json=query, headers=ncc).json()["match"] is False
    assert service.client.post("/v1/shares/ncii-kr/accept", headers=ncc).status_code == 403
    accepted = service.client.post("/v1/shares/ncii-kr/accept", headers=ncc_admin)
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    service.follow()
    result = service.client.post("/v1/match/hashes", json=query, headers=ncc).json()
    assert result["match"] is True
    (hit,) = result["results"][0]["matches"]
    assert hit["list"] == "ncii-kr" and hit["reference"] == "case-7" and hit["band"] == "exact"
    assert hit["distance"] is None  # another organisation's list: a band, not a distance
    assert "hash" not in hit and value.hex not in str(hit)  # never another organisation's hash
    own = service.client.post("/v1/match/hashes", json=query, headers=kcsc).json()
    assert own["results"][0]["matches"][0]["distance"] == 0  # the owner sees exact distances


def test_image_matching_variants_and_withdrawal(service: Service) -> None:
    key = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    service.client.post("/v1/lists", json={"name": "l", "category": "ncii"}, headers=key)
    original = photo(3)
    (value,) = hash_bytes(original, [PDQ])
    service.client.post(
        "/v1/lists/l/entries",
        json={"entries": [{"algorithm": "pdq", "hash": value.hex, "reference": "r1"}]},
        headers=key,
    )
    service.follow()
    flipped = encode(
        Image.open(io.BytesIO(original)).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "PNG",
    )
    multipart = service.client.post(
        "/v1/match", files={"file": ("x.png", flipped, "image/png")}, headers=key
    )
    assert multipart.status_code == 200, multipart.text
    body = multipart.json()
    assert body["match"] is True and body["matches"][0]["variant"] == "flip_horizontal"
    assert set(body["hashes"]) == {"pdq", "phash", "md5", "sha256"}
    raw = service.client.post(
        "/v1/match", content=original, headers={**key, "Content-Type": "image/jpeg"}
    )
    assert raw.json()["matches"][0]["variant"] == "original"
    assert raw.json()["matches"][0]["distance"] <= 2
    hashed = service.client.post(
        "/v1/hash", content=original, headers={**key, "Content-Type": "image/jpeg"}
    )
    assert hashed.json()["hashes"]["pdq"]["value"] == value.hex
    withdrawn = service.client.post(
        "/v1/lists/l/withdrawals", json={"reason": "victim", "references": ["r1"]}, headers=key
    )
    assert withdrawn.json()["withdrawn"] == 1
    service.follow()
    assert (
        service.client.post(
            "/v1/match", content=original, headers={**key, "Content-Type": "image/jpeg"}
        ).json()["match"]
        is False
    )


def test_allow_list_hit_suppresses_block_hits(service: Service) -> None:
    key = service.key("org", Role.CONTRIBUTE, Role.MATCH)
    image = photo(5)
    (value,) = hash_bytes(image, [PDQ])
    for name, kind in (("block", "block"), ("known-good", "allow")):
        service.client.post(
            "/v1/lists", json={"name": name, "category": "csam", "kind": kind}, headers=key
        )
        service.client.post(
            f"/v1/lists/{name}/entries",
            json={"entries": [{"algorithm": "pdq", "hash": value.hex}]},
            headers=key,
        )
    service.follow()
    body = service.client.post(
        "/v1/match", content=image, headers={**key, "Content-Type": "image/jpeg"}
    ).json()
    assert body["match"] is False
    assert [m["list"] for m in body["allowed"]] == ["known-good"]
    assert body["matches"][0]["list"] == "block" and body["matches"][0]["suppressed"] is True


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"hello", "text/plain", 415, "unsupported_content_type"),
        (b"%PDF-1.7", "image/jpeg", 415, "unsupported_media"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/jpeg", 422, "corrupt_media"),
        (b"", "image/jpeg", 422, "empty_media"),
        (b"\xff" * 3_000_000, "image/jpeg", 413, "payload_too_large"),
    ],
)
def test_image_errors(
    service: Service, content: bytes, content_type: str, status: int, code: str
) -> None:
    key = service.key("org", Role.MATCH)
    response = service.client.post(
        "/v1/match", content=content, headers={**key, "Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_bad_hashes_name_the_field(service: Service) -> None:
    key = service.key("org", Role.MATCH)
    bad = service.client.post(
        "/v1/match/hashes",
        json={
            "hashes": [
                {"algorithm": "pdq", "value": "ab" * 32},
                {"algorithm": "pdq", "value": "zz"},
            ]
        },
        headers=key,
    )
    assert bad.status_code == 422 and "hashes[1]" in bad.json()["error"]["message"]
    unknown = service.client.post(
        "/v1/match/hashes", json={"hashes": [{"algorithm": "photodna", "value": "00"}]}, headers=key
    )
    assert unknown.status_code == 422 and "photodna" in unknown.json()["error"]["message"]
    shape = service.client.post("/v1/match/hashes", json={"hashes": "nope"}, headers=key)
    assert shape.status_code == 422 and shape.json()["error"]["code"] == "invalid_request"
    too_many = service.client.post(
        "/v1/match/hashes",
        json={"hashes": [{"algorithm": "md5", "value": "0" * 32}] * 10_001},
        headers=key,
    )
    assert too_many.status_code == 422


def test_metrics_changes_and_no_media_written(service: Service, tmp_path: Path) -> None:
    key = service.key("org", Role.CONTRIBUTE, Role.MATCH)
    service.client.post("/v1/lists", json={"name": "l", "category": "csam"}, headers=key)

    def files() -> set[str]:
        return {
            str(p)
            for p in tmp_path.rglob("*")
            if p.is_file() and "-wal" not in p.name and "-shm" not in p.name
        }

    temp_before = set(Path(tempfile.gettempdir()).iterdir())
    before = files()
    big = encode(natural_image(1600, 1200, seed=8), "JPEG", quality=95)  # > 1 MB multipart
    for _ in range(3):
        service.client.post(
            "/v1/match", files={"file": ("secret-name.jpg", big, "image/jpeg")}, headers=key
        )
        service.client.post(
            "/v1/match", content=photo(), headers={**key, "Content-Type": "image/jpeg"}
        )
    assert files() == before
    assert set(Path(tempfile.gettempdir()).iterdir()) - temp_before == set()
    metrics = service.client.get("/metrics").text
    assert 'hashmatch_requests_total{method="POST",route="/v1/match",status="200"}' in metrics
    service.client.get("/v1/lists")  # no key: the 401 is counted under its own status
    metrics = service.client.get("/metrics").text
    assert 'hashmatch_requests_total{method="GET",route="/v1/lists",status="401"} 1.0' in metrics
    assert "hashmatch_index_entries" in metrics and "secret-name" not in metrics
    changes = service.client.get("/v1/changes?cursor=0", headers=key).json()
    assert [c["kind"] for c in changes["changes"]] == ["list"]
    assert changes["changes"][0]["list"] == "l"


def test_a_revoked_key_stops_working_when_its_cache_entry_expires(tmp_path: Path) -> None:
    store = Store.open(database_url(tmp_path / "index", None))
    info, secret = store.keys.create("org", frozenset({Role.MATCH}), actor="t")
    remembered, expiring = KeyCache(store, ttl=3600), KeyCache(store, ttl=0.05)
    stored = remembered.lookup(secret)
    assert stored is not None and stored.id == info.id and stored.organisation == "org"
    assert expiring.lookup(secret) == stored
    assert remembered.cached(secret) == (True, stored)
    store.keys.revoke(info.id, actor="t")
    time.sleep(0.1)
    assert remembered.cached(secret) == (True, stored)  # within its time to live
    assert expiring.cached(secret) == (False, None)
    assert expiring.lookup(secret) is None
    assert remembered.cached("hm_unknown") == (False, None)
    store.close()


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "index", rate_limit=1.0, rate_burst=3)
    store = Store.open(database_url(settings.data_dir, None))
    with TestClient(create_app(settings, load_in_background=False)) as client:
        _, secret = store.keys.create("org", frozenset({Role.MATCH}), actor="t")
        _, other = store.keys.create("org", frozenset({Role.MATCH}), actor="t")
        statuses = [
            client.get("/v1/lists", headers={"Authorization": f"Bearer {secret}"}).status_code
            for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 429, 429]
        limited = client.get("/v1/lists", headers={"Authorization": f"Bearer {secret}"})
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # buckets are per key
        assert (
            client.get("/v1/lists", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        )
    store.close()


def test_token_bucket_refills() -> None:
    from hashmatch.api.ratelimit import RateLimited, TokenBuckets

    buckets = TokenBuckets(rate=2.0, burst=2)
    buckets.take(1, now=0.0)
    buckets.take(1, now=0.0)
    with pytest.raises(RateLimited) as limited:
        buckets.take(1, now=0.0)
    assert limited.value.retry_after == pytest.approx(0.5)
    buckets.take(1, now=0.5)  # one token back after half a second
    with pytest.raises(RateLimited):
        buckets.take(1, now=0.5)


def test_hash_set_file_upload_and_paged_entries(service: Service) -> None:
    key = service.key("org", Role.CONTRIBUTE, Role.MATCH)
    service.client.post("/v1/lists", json={"name": "l", "category": "csam"}, headers=key)
    rows = "".join(f"pdq,{i:064x},ref-{i}\n" for i in range(25))
    body = f"algorithm,hash,reference\n{rows}pdq,xyz,bad\n".encode()
    strict = service.client.post(
        "/v1/lists/l/entries?strict=true", content=body, headers={**key, "Content-Type": "text/csv"}
    )
    assert strict.status_code == 422 and strict.json()["error"]["code"] == "import_rejected"
    report = service.client.post(
        "/v1/lists/l/entries", content=body, headers={**key, "Content-Type": "text/csv"}
    ).json()
    assert (report["added"], report["rejected"]) == (25, 1)
    assert report["errors"] == [{"line": 27, "reason": "pdq hash must be 64 hex digits, got 3"}]
    first = service.client.get("/v1/lists/l/entries?limit=10", headers=key).json()
    assert [e["reference"] for e in first["entries"]] == [f"ref-{i}" for i in range(10)]
    rest = service.client.get(f"/v1/lists/l/entries?after={first['next']}&limit=100", headers=key)
    assert len(rest.json()["entries"]) == 15 and rest.json()["next"] is None


def test_multipart_file_over_the_cap_is_refused_while_reading(service: Service) -> None:
    key = service.key("org", Role.MATCH)
    just_over = b"\xff\xd8\xff" + b"\x00" * 2_000_010  # the cap is 2,000,000 bytes
    response = service.client.post(
        "/v1/match", files={"file": ("x.jpg", just_over, "image/jpeg")}, headers=key
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_a_hash_set_file_sent_as_multipart_is_read_as_the_file(service: Service) -> None:
    """As the README suggests: ``curl -F file=@hashes.csv``. The form's headers are not rows."""
    key = service.key("org", Role.CONTRIBUTE, Role.MATCH)
    service.client.post("/v1/lists", json={"name": "l", "category": "csam"}, headers=key)
    rows = "".join(f"pdq,{i:064x},ref-{i}\n" for i in range(30))
    upload = service.client.post(
        "/v1/lists/l/entries",
        files={"file": ("hashes.csv", f"algorithm,hash,reference\n{rows}".encode(), "text/csv")},
        data={"note": "ignored"},
        headers=key,
    )
    assert upload.status_code == 200, upload.text
    report = upload.json()
    assert (report["added"], report["rejected"], report["errors"]) == (30, 0, [])
    entries = service.client.get("/v1/lists/l/entries", headers=key).json()["entries"]
    assert [e["reference"] for e in entries] == [f"ref-{i}" for i in range(30)]
    no_file = service.client.post(
        "/v1/lists/l/entries", files={"other": ("x.csv", b"hash\n", "text/csv")}, headers=key
    )
    assert no_file.status_code == 400 and "'file'" in no_file.json()["error"]["message"]
