"""Videos over HTTP through the real ASGI app, on a real SQLite store: an agency hashes a
video and lists it; platforms match copies, clips, stills and images inside videos, by upload
or by frame hashes; bad videos get clear errors and nothing is written."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import encode, natural_image
from hashmatch.signals import MD5, PDQ, hash_bytes
from hashmatch.store import Role
from services import Service, running_service
from videos import downscaled, encode_video, panning_frames, panning_video, still


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running_service("sqlite", tmp_path, max_video_bytes=20_000_000) as running:
        yield running


MP4 = {"Content-Type": "video/mp4"}


def hashed(service: Service, key: dict[str, str], data: bytes) -> dict[str, Any]:
    response = service.post("/v1/hash", key, MP4, content=data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def matched(service: Service, key: dict[str, str], data: bytes, **headers: str) -> dict[str, Any]:
    response = service.post("/v1/match", key, {**MP4, **headers}, content=data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def listed(service: Service) -> tuple[dict[str, str], bytes]:
    """An agency's list holding one video (20 s, hashed by the service), and its bytes."""
    key = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    service.create_list(key, "videos")
    original = panning_video(seconds=20, fps=10, seed=1)
    body = hashed(service, key, original)
    assert body["video"]["frames_hashed"] == 20  # one a second at 10 fps: frames 0, 10, ...
    added = service.post(
        "/v1/lists/videos/entries",
        key,
        json={
            "entries": [
                {"algorithm": "vpdq", "frames": body["video"]["frames"], "reference": "case-9"}
            ]
        },
    )
    assert added.status_code == 200 and added.json()["added"] == 1, added.text
    service.follow()
    return key, original


def test_hash_reports_the_video_and_its_frames(service: Service) -> None:
    key = service.key("kcsc", Role.MATCH)
    data = panning_video(seconds=5, fps=25, seed=2)
    body = hashed(service, key, data)
    video = body["video"]
    assert (video["container"], video["width"], video["height"]) == ("MP4", 320, 240)
    assert video["fps"] == 25 and video["frames_hashed"] == 5
    numbers = [int(line.split(",")[0]) for line in video["frames"]]
    assert numbers == [0, 25, 50, 75, 100]
    assert set(body["hashes"]) == {"md5", "sha256", "vpdq"}
    assert body["hashes"]["md5"]["value"] == MD5.hash_bytes(data).hex


def test_copies_and_clips_of_a_listed_video_match(
    service: Service, listed: tuple[dict[str, str], bytes]
) -> None:
    _, original = listed
    platform = service.key("kcsc", Role.MATCH)
    same = matched(service, platform, original)
    assert same["match"] is True
    (hit,) = same["matches"]
    assert hit["reference"] == "case-9" and hit["algorithm"] == "vpdq"
    assert hit["video"]["query_percent"] == 100 and hit["video"]["listed_percent"] == 100
    # The md5 of the bytes is not listed; the frames are what matched.
    smaller = encode_video(
        panning_frames(20, 10, seed=1), 10, bit_rate=150_000, edit=downscaled(0.6)
    )
    assert matched(service, platform, smaller)["match"] is True
    # A 6-second clip from second 8, at another frame rate: a clip must match.
    frames = list(panning_frames(20, 10, seed=1))[80:140]
    clip = encode_video(iter(frames[::2]), 5)
    result = matched(service, platform, clip)
    assert result["match"] is True, result
    video = result["matches"][0]["video"]
    assert video["listed_percent"] < 50 <= video["query_percent"]
    (start, end), *_ = video["listed_ranges"]
    assert 7 <= start <= 9 and 12 <= end <= 14
    unrelated = panning_video(seconds=10, fps=10, seed=5)
    assert matched(service, platform, unrelated)["match"] is False
    metrics = service.client.get("/metrics").text
    assert 'hashmatch_index_entries{algorithm="vpdq"} 1.0' in metrics
    kept = hashed(service, platform, original)["video"]["frames_kept"]
    assert 10 <= kept <= 20 and f"hashmatch_video_frames {kept}.0" in metrics


def test_a_still_of_a_listed_video_matches_with_its_time(
    service: Service, listed: tuple[dict[str, str], bytes]
) -> None:
    _, _ = listed
    platform = service.key("kcsc", Role.MATCH)
    frame = list(panning_frames(20, 10, seed=1))[120]  # second 12
    jpeg = encode(Image.fromarray(frame), "JPEG", quality=85)
    result = matched(service, platform, jpeg, **{"Content-Type": "image/jpeg"})
    assert result["match"] is True
    (hit,) = result["matches"]
    assert hit["reference"] == "case-9" and abs(hit["listed_time"] - 12) <= 1


def test_a_listed_image_shown_inside_a_video_is_found(service: Service) -> None:
    key = service.key("kcsc", Role.CONTRIBUTE, Role.MATCH)
    service.create_list(key, "images")
    picture = natural_image(320, 240, seed=7)
    (value,) = hash_bytes(encode(picture, "PNG"), [PDQ])
    service.add(key, "images", ("pdq", value.hex, "photo-3"))
    service.follow()
    before = list(panning_frames(4, 10, seed=8))
    inside = encode_video(iter(before + list(still(3, 10, picture))), 10)
    result = matched(service, key, inside)
    assert result["match"] is True
    (hit,) = result["matches"]
    assert hit["reference"] == "photo-3" and 4 <= hit["query_time"] <= 7


def test_match_hashes_takes_frame_sets(
    service: Service, listed: tuple[dict[str, str], bytes]
) -> None:
    _, original = listed
    platform = service.key("kcsc", Role.MATCH)
    frames = hashed(service, platform, original)["video"]["frames"]
    body = {"videos": [{"id": "upload-1", "frames": frames[5:15]}, {"frames": "\n".join(frames)}]}
    result = service.post("/v1/match/hashes", platform, json=body).json()
    assert result["match"] is True
    assert [v["id"] for v in result["videos"]] == ["upload-1", None]
    assert all(v["match"] for v in result["videos"])
    assert result["videos"][0]["matches"][0]["reference"] == "case-9"
    bad = service.post(
        "/v1/match/hashes", platform, json={"videos": [{"frames": ["0,100,zz,0.000"]}]}
    )
    assert bad.status_code == 422 and "videos[0].frames" in bad.json()["error"]["message"]
    empty = service.post("/v1/match/hashes", platform, json={})
    assert empty.status_code == 422 and "at least one" in empty.json()["error"]["message"]


def test_withdrawing_the_video_stops_every_kind_of_match(
    service: Service, listed: tuple[dict[str, str], bytes]
) -> None:
    owner, original = listed
    withdrawn = service.post(
        "/v1/lists/videos/withdrawals", owner, json={"reason": "victim", "references": ["case-9"]}
    )
    assert withdrawn.json()["withdrawn"] == 1
    service.follow()
    assert matched(service, owner, original)["match"] is False
    frame = list(panning_frames(20, 10, seed=1))[50]
    jpeg = encode(Image.fromarray(frame), "JPEG", quality=90)
    assert matched(service, owner, jpeg, **{"Content-Type": "image/jpeg"})["match"] is False


def _truncated() -> bytes:
    data = panning_video(seconds=4, fps=10)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (_truncated, 422, "corrupt_media"),
        (lambda: b"#EXTM3U\n#EXT-X-VERSION:3\nsegment0.ts\n", 415, "unsupported_media"),
        (lambda: b"\x00\x00\x00\x18ftypisom" + bytes(64), 422, "corrupt_media"),
    ],
)
def test_bad_videos_get_clear_errors_and_nothing_is_written(
    service: Service, tmp_path: Path, make: Any, status: int, code: str
) -> None:
    key = service.key("org", Role.MATCH)

    def files() -> set[Path]:
        return {p for p in tmp_path.rglob("*") if p.is_file() and "-wal" not in p.name}

    before, temp_before = files(), set(Path(tempfile.gettempdir()).iterdir())
    response = service.client.post("/v1/match", content=make(), headers={**key, **MP4})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert files() == before
    assert set(Path(tempfile.gettempdir()).iterdir()) - temp_before == set()


def test_video_byte_cap_is_the_videos_own(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path, max_video_bytes=50_000) as service:
        key = service.key("org", Role.MATCH)
        data = panning_video(seconds=10, fps=10)
        assert len(data) > 50_000
        response = service.client.post("/v1/match", content=data, headers={**key, **MP4})
        assert response.status_code == 413
        # Images keep their own cap (2 MB in these tests).
        jpeg = encode(Image.fromarray(np.zeros((64, 64, 3), np.uint8)), "JPEG")
        ok = service.client.post(
            "/v1/match", content=jpeg, headers={**key, "Content-Type": "image/jpeg"}
        )
        assert ok.status_code == 200, ok.text


def test_another_organisation_cannot_match_add_to_or_read_a_listed_video(
    service: Service, listed: tuple[dict[str, str], bytes]
) -> None:
    owner, original = listed
    other = service.key("ncc", Role.CONTRIBUTE, Role.MATCH)
    # Not shared: its videos do not match for another organisation, by upload or by frames.
    assert matched(service, other, original)["match"] is False
    frames = hashed(service, other, original)["video"]["frames"]
    by_frames = service.post("/v1/match/hashes", other, json={"videos": [{"frames": frames}]})
    assert by_frames.json()["match"] is False
    # It can neither add to the list, nor withdraw or revive its entries.
    entry = {"algorithm": "vpdq", "frames": frames, "reference": "planted"}
    added = service.post("/v1/lists/videos/entries", other, json={"entries": [entry]})
    assert added.status_code == 404
    for action in ("withdrawals", "revivals"):
        body = {"reason": "x", "references": ["case-9"]}
        assert service.post(f"/v1/lists/videos/{action}", other, json=body).status_code == 404
    # Shared and accepted: it matches, with scores but no distance and no hash of the owner's.
    service.client.patch("/v1/lists/videos", json={"shared_with": ["ncc"]}, headers=owner)
    admin = service.key("ncc", Role.ADMIN)
    assert service.post("/v1/shares/videos/accept", admin).status_code == 200
    service.follow()
    result = matched(service, other, original)
    (hit,) = result["matches"]
    assert result["match"] is True and hit["distance"] is None and hit["video"] is not None
    listed_hexes = {line.split(",")[2] for line in frames}
    assert not any(value in str(hit) for value in listed_hexes)
    assert matched(service, owner, original)["matches"][0]["distance"] == 0
