"""The robustness benchmark's scoring, against hand-worked cases: a wrong threshold or recall
here would misreport every figure of the benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_robustness import (
    check,
    counts,
    distance_matrix,
    load_baseline,
    tail_threshold,
    threshold_at_precision,
)


def test_threshold_stops_below_the_first_false_match() -> None:
    # Query i's own original is the diagonal; query 0 comes within 5 of original 2.
    distances = np.array([[1, 50, 5], [60, 3, 70], [80, 90, 20]])
    tp, fp = counts(distances, bits=256)
    assert threshold_at_precision(tp, fp) == 4  # at 5 a false match costs the 99.99%
    assert tp[4] == 2 and tp[20] == 3 and fp[4] == 0 and fp[5] == 1


def test_no_false_match_keeps_every_threshold() -> None:
    tp, fp = counts(np.array([[0, 200], [200, 3]]), bits=64)
    assert threshold_at_precision(tp, fp) == 64  # clipped to the hash's length
    assert tp[64] == 2 and fp[64] == 0


def test_distances_take_the_closest_variant_plus_its_penalty() -> None:
    zero, ones = bytes(32), b"\xff" * 32
    three = b"\x07" + bytes(31)  # three bits set
    stored = [zero, ones]
    queries = [[(three, 0), (ones, 6)], [(zero, 6)]]
    out = distance_matrix(queries, stored)
    assert out.tolist() == [[3, 6], [6, 262]]


def test_tail_fit_follows_a_log_linear_tail() -> None:
    # A tail that falls by ten every 5 bits from 100 down: fit and extrapolate.
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [np.full(10 ** (k + 1), 100 + 5 * k) for k in range(4)] + [rng.integers(130, 200, 10**5)]
    )
    fit = tail_threshold(values, budget=1e-9)
    assert abs(fit["bits_per_decade"] - 5) < 0.6
    assert 60 <= fit["threshold"] <= 80


def test_check_reports_drops_beyond_one_point(tmp_path: Path) -> None:
    row = {"recall_at_precision": 0.9, "recall_at_common": 0.8, "recall_at_default": 0.5}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"transforms": {"blur": {"hashmatch": row}}}))
    baseline = load_baseline(path)
    same = {"transforms": {"blur": {"hashmatch": dict(row, recall_at_default=0.495)}}}
    assert check(same, baseline) == []
    worse = {"transforms": {"blur": {"hashmatch": dict(row, recall_at_precision=0.88)}}}
    assert check(worse, baseline) == ["blur hashmatch recall_at_precision: 0.900 -> 0.880"]
    # The defaults must stay within the measured precision (PDQ's default is 31).
    loose = dict(same, common_thresholds={"hashmatch": 30, "pdq_hma": 80})
    assert check(loose, baseline) == [
        "hashmatch default 31 is above the threshold that keeps 99.99% precision on every "
        "transform (30)"
    ]
    assert check({"transforms": {}}, baseline) == [
        "blur hashmatch: in the baseline but not measured"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the baseline"),
        ("{not json", "is not a robustness baseline (JSONDecodeError"),
        ('{"settings": {}}', "is not a robustness baseline (KeyError"),
        ('{"transforms": {"blur": {"hashmatch": {"recall_at_precision": "x"}}}}', "TypeError"),
        ('{"transforms": [1]}', "AttributeError"),
    ],
)
def test_a_bad_baseline_is_refused_before_any_work(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exited:
        load_baseline(path)
    assert message in str(exited.value.code)
