"""Listed videos in the matcher, over a real database: frames in the PDQ index, vPDQ scores
against a brute-force oracle, cross-modal hits, lists' rules, withdrawal and snapshots."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbs import BACKENDS, database
from hashmatch.hashsets.read import HashRow
from hashmatch.matching.follower import Follower
from hashmatch.matching.frames import VideoTable, distinct_frames, frame_ids, split_frame_id
from hashmatch.matching.lookup import lookup_video
from hashmatch.matching.state import MatchState
from hashmatch.matching.video import QueryFrames, ranges, search_video
from hashmatch.signals import PDQ, VARIANT_PENALTY, VPDQ, Hash
from hashmatch.signals.vpdq import FrameHash, frames_digest, pack_frames
from hashmatch.store import Store


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as database_url:
        yield database_url


def flip(value: bytes, bits: int, rng: np.random.Generator) -> bytes:
    array = np.unpackbits(np.frombuffer(value, dtype=np.uint8))
    positions = rng.choice(array.size, bits, replace=False)
    array[positions] ^= 1
    return np.packbits(array).tobytes()


def video(
    codes: Sequence[bytes], fps: float = 30.0, step: int = 30, quality: int = 100
) -> list[FrameHash]:
    return [FrameHash(i * step, i * step / fps, code, quality) for i, code in enumerate(codes)]


def random_codes(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(n)]


def add_video(store: Store, name: str, frames: Sequence[FrameHash], reference: str) -> None:
    row = HashRow(1, Hash(VPDQ, frames_digest(frames)), reference, (), pack_frames(frames))
    report = store.entries.import_rows(name, [row], actor="test")
    assert report.added == 1


def add_image(store: Store, name: str, code: bytes, reference: str) -> None:
    report = store.entries.import_rows(name, [HashRow(1, Hash(PDQ, code), reference)], actor="test")
    assert report.added == 1


def loaded(store: Store, tmp_path: Path) -> Follower:
    follower = Follower(store, tmp_path / "snapshots")
    follower.load()
    return follower


def oracle(
    query: Sequence[FrameHash], listed: Sequence[FrameHash], threshold: int
) -> tuple[float, float]:
    """vPDQ's two percentages, computed the obvious way: distinct hashes of quality >= 50 on
    each side, every pair compared."""
    q = sorted({f.pdq for f in query if f.quality >= 50})
    t = sorted({f.pdq for f in listed if f.quality >= 50})

    def near(a: bytes, b: bytes) -> bool:
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count() <= threshold

    q_hit = sum(any(near(a, b) for b in t) for a in q)
    t_hit = sum(any(near(a, b) for a in q) for b in t)
    return 100 * q_hit / len(q) if q else 0.0, 100 * t_hit / len(t) if t else 0.0


def test_frame_ids_round_trip() -> None:
    ids = frame_ids(123_456_789, 5)
    assert [split_frame_id(int(i)) for i in ids] == [(123_456_789, k) for k in range(5)]
    assert len(set(ids.tolist())) == 5 and all(i > 0 for i in ids.tolist())


def test_distinct_frames_drop_repeats_and_low_quality() -> None:
    a, b, c = random_codes(3, seed=1)
    frames = [
        FrameHash(0, 0.0, a, 100),
        FrameHash(30, 1.0, b, 100),
        FrameHash(60, 2.0, a, 90),  # a repeat of the first
        FrameHash(90, 3.0, c, 10),  # under the quality cut
    ]
    listed, codes = distinct_frames(frames)
    assert listed.kept == 2 and codes.shape == (2, 32)
    assert listed.distinct.tolist() == [0, 1, 0, -1]
    assert listed.times_of([0]).tolist() == [0.0, 2.0]
    assert listed.time_of(1) == 1.0


def test_an_image_finds_a_listed_videos_frame_with_its_time(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("videos", owner="a", category="ncii", actor="t")
    codes = random_codes(20, seed=2)
    add_video(store, "videos", video(codes), "clip-1")
    state = loaded(store, tmp_path).state
    rng = np.random.default_rng(3)
    (found,) = state.match([Hash(PDQ, flip(codes[7], 12, rng))])
    assert len(found) == 1
    hit = found[0]
    assert hit.reference == "clip-1" and hit.distance == 12 and hit.listed_time == 7.0
    # Over the list's PDQ threshold (31): nothing.
    (found,) = state.match([Hash(PDQ, flip(codes[7], 32, rng))])
    assert found == []


def test_video_scores_equal_the_brute_force_oracle(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("videos", owner="a", category="ncii", actor="t")
    listed_codes = random_codes(60, seed=4)
    listed = video(listed_codes)
    add_video(store, "videos", listed, "long")
    state = loaded(store, tmp_path).state
    rng = np.random.default_rng(5)
    # A 10-second clip from second 20, re-encoded (a few bits each), plus 5 unrelated frames.
    clip = [flip(code, int(rng.integers(0, 20)), rng) for code in listed_codes[20:30]]
    query = video(clip + random_codes(5, seed=6), fps=25.0, step=25)
    found = search_video(state, QueryFrames.of(query))
    (hit,) = found.hits
    score = hit.match.video
    assert score is not None
    want_query, want_listed = oracle(query, listed, 31)
    assert score.query_percent == pytest.approx(want_query)
    assert score.listed_percent == pytest.approx(want_listed)
    assert (score.query_frames, score.query_kept) == (10, 15)
    assert (score.listed_frames, score.listed_kept) == (10, 60)
    assert score.query_ranges == ((0.0, 9.0),)
    assert score.listed_ranges == ((20.0, 29.0),)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    listed_n=st.integers(1, 40),
    query_n=st.integers(1, 40),
    threshold=st.integers(0, 40),
)
def test_scores_match_the_oracle_on_random_videos(
    seed: int, listed_n: int, query_n: int, threshold: int
) -> None:
    rng = np.random.default_rng(seed)
    listed_codes = random_codes(listed_n, seed)
    # Query frames: some near listed frames, some far, some repeated; random qualities.
    query_codes = []
    for _ in range(query_n):
        if rng.random() < 0.6:
            base = listed_codes[int(rng.integers(0, listed_n))]
            query_codes.append(flip(base, int(rng.integers(0, 45)), rng))
        elif query_codes and rng.random() < 0.3:
            query_codes.append(query_codes[-1])
        else:
            query_codes.append(rng.integers(0, 256, 32, dtype=np.uint8).tobytes())
    listed = [
        FrameHash(i, float(i), c, int(rng.integers(30, 101))) for i, c in enumerate(listed_codes)
    ]
    query = [
        FrameHash(i, float(i), c, int(rng.integers(30, 101))) for i, c in enumerate(query_codes)
    ]
    state = MatchState()
    state.set_lists([_list_info(threshold)])
    state.add([_entry_row(1, listed)])
    want_query, want_listed = oracle(query, listed, threshold)
    found = search_video(state, QueryFrames.of(query))
    videos = [hit for hit in found.hits if hit.match.video is not None]
    # The rule judges seconds holding a matched frame (one frame a second here, repeats
    # included), the report gives vPDQ's shares of distinct frames as well.
    query_cov, listed_cov, listed_found = seconds_oracle(query, listed, threshold)
    copy = query_cov >= 50
    contained = listed_cov >= 80 and listed_found >= 3
    if want_query == 0 or not (copy or contained):
        assert videos == []
    else:
        (hit,) = videos
        assert hit.match.video is not None
        assert hit.match.video.query_percent == pytest.approx(want_query)
        assert hit.match.video.listed_percent == pytest.approx(want_listed)
        assert hit.match.video.query_coverage == pytest.approx(query_cov)
        assert hit.match.video.listed_coverage == pytest.approx(listed_cov)


def seconds_oracle(
    query: Sequence[FrameHash], listed: Sequence[FrameHash], threshold: int
) -> tuple[float, float, int]:
    """Shares of each side's seconds (with a frame of quality >= 50) holding a frame within
    ``threshold`` of a frame of the other side, and the listed distinct frames found."""

    def near(a: bytes, b: bytes) -> bool:
        return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count() <= threshold

    kept_query = [f for f in query if f.quality >= 50]
    kept_listed = [f for f in listed if f.quality >= 50]
    query_hit = {
        int(f.timestamp) for f in kept_query if any(near(f.pdq, g.pdq) for g in kept_listed)
    }
    listed_hit = {
        int(g.timestamp) for g in kept_listed if any(near(f.pdq, g.pdq) for f in kept_query)
    }
    query_all = {int(f.timestamp) for f in kept_query}
    listed_all = {int(g.timestamp) for g in kept_listed}
    found = len({g.pdq for g in kept_listed if any(near(f.pdq, g.pdq) for f in kept_query)})
    return (
        100 * len(query_hit) / len(query_all) if query_all else 0.0,
        100 * len(listed_hit) / len(listed_all) if listed_all else 0.0,
        found,
    )


def _list_info(vpdq_threshold: int, **thresholds: int):  # type: ignore[no-untyped-def]
    from hashmatch.store import ListInfo

    return ListInfo(
        id=1,
        name="videos",
        owner="a",
        kind="block",
        category="ncii",
        source="",
        jurisdiction="",
        description="",
        enabled=True,
        thresholds={"pdq": 31, "vpdq": vpdq_threshold, **thresholds},
        shared_with=(),
        accepted_by=(),
        trusted_by=(),
    )


def _entry_row(entry_id: int, frames: Sequence[FrameHash]):  # type: ignore[no-untyped-def]
    import datetime as dt

    from hashmatch.store import EntryRow

    return EntryRow(
        entry_id,
        1,
        Hash(VPDQ, frames_digest(frames)),
        f"video-{entry_id}",
        (),
        dt.datetime.now(dt.UTC),
        frames=pack_frames(frames),
    )


def test_each_lists_percentages_decide(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    codes = random_codes(40, seed=8)
    store.lists.create("clip-ok", owner="a", category="ncii", actor="t")
    store.lists.create(
        "whole-only",
        owner="a",
        category="ncii",
        actor="t",
        thresholds={"vpdq_listed_percent": 80},
    )
    add_video(store, "clip-ok", video(codes), "v1")
    add_video(store, "whole-only", video(codes), "v2")
    state = loaded(store, tmp_path).state
    clip = QueryFrames.of(video(codes[:10]))  # a quarter of the listed video
    names = {hit.match.list for hit in search_video(state, clip).hits}
    assert names == {"clip-ok"}
    whole = QueryFrames.of(video(codes[2:38]))  # 90% of it
    names = {hit.match.list for hit in search_video(state, whole).hits}
    assert names == {"clip-ok", "whole-only"}


def test_a_listed_video_inside_a_longer_upload_matches_by_its_share(
    url: str, tmp_path: Path
) -> None:
    store = Store.open(url)
    store.lists.create("compilations", owner="a", category="ncii", actor="t")
    store.lists.create(
        "copies-only",
        owner="a",
        category="ncii",
        actor="t",
        thresholds={"vpdq_contained_percent": 0},
    )
    listed = random_codes(10, seed=20)
    add_video(store, "compilations", video(listed), "short")
    add_video(store, "copies-only", video(listed), "short-2")
    tiny = random_codes(2, seed=21)
    add_video(store, "compilations", video(tiny), "two-frames")
    state = loaded(store, tmp_path).state
    # 9 of the listed video's 10 frames inside 50 others (and the two-frame video whole).
    upload = random_codes(25, seed=22) + listed[:9] + tiny + random_codes(25, seed=23)
    found = search_video(state, QueryFrames.of(video(upload)))
    (hit,) = found.hits
    assert hit.match.reference == "short" and hit.match.video is not None
    assert hit.match.video.listed_percent == 90 and hit.match.video.query_percent < 20
    # 7 of 10 is under the 80% share: nothing.
    upload = random_codes(25, seed=22) + listed[:7] + random_codes(25, seed=23)
    assert search_video(state, QueryFrames.of(video(upload))).hits == []


def test_a_query_videos_frames_find_listed_images(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("images", owner="a", category="ncii", actor="t")
    (image,) = random_codes(1, seed=9)
    add_image(store, "images", image, "photo-1")
    state = loaded(store, tmp_path).state
    rng = np.random.default_rng(10)
    others = random_codes(8, seed=11)
    threshold = 31 - VARIANT_PENALTY
    for distance, expected in [(threshold, True), (threshold + 1, False)]:
        frames = video([*others[:4], flip(image, distance, rng), *others[4:]])
        found = search_video(state, QueryFrames.of(frames))
        assert [hit.match.reference for hit in found.hits] == (["photo-1"] if expected else [])
        if expected:
            assert found.hits[0].match.query_time == 4.0


def test_withdrawing_a_video_withdraws_every_frame(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("videos", owner="a", category="ncii", actor="t")
    codes = random_codes(30, seed=12)
    add_video(store, "videos", video(codes), "to-withdraw")
    follower = loaded(store, tmp_path)
    assert follower.state.match([Hash(PDQ, codes[3])]) != [[]]
    store.withdrawals.withdraw(
        "videos", references=["to-withdraw"], actor="t", reason="victim asked"
    )
    follower.refresh()
    state = follower.state
    assert all(state.match([Hash(PDQ, code)]) == [[]] for code in codes)
    assert search_video(state, QueryFrames.of(video(codes))).hits == []
    assert len(state.videos) == 0
    assert len(state.indexes[PDQ]) == 0  # its frames are out of the index, not just unreported


def test_snapshots_keep_listed_videos(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("videos", owner="a", category="ncii", actor="t")
    codes = random_codes(25, seed=13)
    add_video(store, "videos", video(codes), "kept")
    follower = loaded(store, tmp_path)
    follower.save_snapshot()
    again = loaded(store, tmp_path)
    assert again.state.videos.get(next(iter(_ids(again.state.videos)))) is not None
    found = search_video(again.state, QueryFrames.of(video(codes[5:15])))
    assert [hit.match.reference for hit in found.hits] == ["kept"]
    (hits,) = again.state.match([Hash(PDQ, codes[12])])
    assert hits[0].listed_time == 12.0


def _ids(table: VideoTable) -> list[int]:
    return [entry_id for entry_id in range(1, 1000) if entry_id in table]


def test_lookup_video_gives_one_verdict_with_allow_lists(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create("block", owner="a", category="ncii", actor="t")
    store.lists.create("allow", owner="a", category="ncii", kind="allow", actor="t")
    codes = random_codes(20, seed=14)
    add_video(store, "block", video(codes), "listed")
    state = loaded(store, tmp_path).state
    query = QueryFrames.of(video(codes[:12]))
    verdict = lookup_video(state, query, organisation="a", lists=frozenset({"block", "allow"}))
    assert verdict.match and verdict.blocks[0].match.video is not None
    add_video(store, "allow", video(codes), "known-good")
    state = loaded(store, tmp_path).state
    verdict = lookup_video(state, query, organisation="a", lists=frozenset({"block", "allow"}))
    assert not verdict.match and verdict.blocks[0].suppressed_by == "allow"


def test_ranges_join_frames_a_step_apart() -> None:
    assert ranges([0, 1, 2, 5, 6, 10], 1.0) == ((0, 2), (5, 6), (10, 10))
    assert ranges([], 1.0) == ()


@pytest.mark.parametrize(
    ("name", "origin", "local", "kept"),
    [
        ("vpdq", 31, 25, 25),  # a lower distance tightens
        ("vpdq", 25, 31, 25),
        ("vpdq_query_percent", 50, 80, 80),  # a higher share tightens
        ("vpdq_query_percent", 80, 50, 80),
        ("vpdq_contained_percent", 80, 0, 0),  # off is strictest
        ("vpdq_contained_percent", 0, 90, 0),
        ("vpdq_contained_percent", 80, 90, 90),
    ],
)
def test_a_mirror_only_tightens_its_origins_video_rule(
    name: str, origin: int, local: int, kept: int
) -> None:
    from hashmatch.store.lists import mirror_thresholds

    assert mirror_thresholds({"thresholds": {name: origin}}, {name: local}) == {name: kept}


def test_a_dense_listing_is_judged_by_seconds_not_by_frames(url: str, tmp_path: Path) -> None:
    store = Store.open(url)
    store.lists.create(
        "whole",
        owner="a",
        category="ncii",
        actor="t",
        thresholds={"vpdq_listed_percent": 80},
    )
    codes = random_codes(200, seed=30)  # 20 s listed at 10 frames a second
    dense = [FrameHash(i * 3, i / 10, code, 100) for i, code in enumerate(codes)]
    add_video(store, "whole", dense, "dense")
    state = loaded(store, tmp_path).state
    once_a_second = [FrameHash(i * 30, float(i), codes[i * 10], 100) for i in range(20)]
    (hit,) = search_video(state, QueryFrames.of(once_a_second)).hits
    score = hit.match.video
    assert score is not None
    assert score.listed_percent == 10  # one listed frame in ten was met...
    assert score.listed_coverage == 100 and score.query_coverage == 100  # ...in every second
    assert (score.listed_seconds, score.listed_seconds_kept) == (20, 20)


def test_a_dense_listing_inside_a_longer_upload_is_found_by_its_seconds(
    url: str, tmp_path: Path
) -> None:
    store = Store.open(url)
    store.lists.create("compilations", owner="a", category="ncii", actor="t")
    codes = random_codes(100, seed=31)  # 10 s listed at 10 frames a second
    add_video(
        store, "compilations", [FrameHash(i * 3, i / 10, c, 100) for i, c in enumerate(codes)], "d"
    )
    state = loaded(store, tmp_path).state
    # Once a second, 30 unrelated seconds, the listed video's 10 seconds, 30 more.
    upload = (
        random_codes(30, seed=32) + [codes[i * 10] for i in range(10)] + random_codes(30, seed=33)
    )
    (hit,) = search_video(state, QueryFrames.of(video(upload))).hits
    assert hit.match.video is not None
    assert hit.match.video.listed_percent == 10 and hit.match.video.listed_coverage == 100
