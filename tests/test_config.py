from __future__ import annotations

from pathlib import Path

import pytest

from hashmatch.config import Settings
from hashmatch.errors import ConfigError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("index")
    assert settings.database_url is None
    assert settings.media_limits.max_bytes == 50_000_000
    assert settings.media_limits.max_pixels == 100_000_000


def test_environment_is_parsed() -> None:
    settings = Settings.from_env(
        {
            "HASHMATCH_DATA_DIR": "/srv/hm",
            "HASHMATCH_PORT": "9001",
            "HASHMATCH_MAX_PIXELS": "25_000_000",
            "HASHMATCH_LOG_LEVEL": "DEBUG",
            "HASHMATCH_DATABASE_URL": "postgresql://x@y/z",
            "UNRELATED": "1",
        }
    )
    assert settings.data_dir == Path("/srv/hm")
    assert settings.port == 9001
    assert settings.max_pixels == 25_000_000
    assert settings.log_level == "debug"
    assert settings.database_url == "postgresql://x@y/z"


def test_overrides_win_and_none_is_ignored() -> None:
    settings = Settings.from_env({"HASHMATCH_PORT": "9001"}, port=7000, host=None)
    assert settings.port == 7000 and settings.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HASHMATCH_PORT", "0"),
        ("HASHMATCH_PORT", "http"),
        ("HASHMATCH_MAX_UPLOAD_BYTES", "-5"),
        ("HASHMATCH_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_threshold_bounds_in_one_variable_or_one_per_signal_type() -> None:
    listed = Settings.from_env({"HASHMATCH_MAX_THRESHOLDS": "PDQ=45, phash=6"})
    single = Settings.from_env(
        {"HASHMATCH_MAX_THRESHOLD_PDQ": "45", "HASHMATCH_MAX_THRESHOLD_PHASH": "6"}
    )
    both = Settings.from_env(
        {"HASHMATCH_MAX_THRESHOLDS": "pdq=45", "HASHMATCH_MAX_THRESHOLD_PHASH": "6"}
    )
    videos = {
        "vpdq": 31,
        "vpdq_query_percent": 50,
        "vpdq_listed_percent": 0,
        "vpdq_contained_percent": 80,
    }
    for settings in (listed, single, both):
        assert settings.max_thresholds == (("pdq", 45), ("phash", 6))
        assert settings.threshold_bounds.defaults() == {"pdq": 31, "phash": 6, **videos}
    default = Settings.from_env({}).threshold_bounds.defaults()
    assert default == {"pdq": 31, "phash": 6, **videos}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"HASHMATCH_MAX_THRESHOLDS": "pdq=45,pdq=40"}, "at most once"),
        ({"HASHMATCH_MAX_THRESHOLDS": "pdq"}, "NAME=BITS"),
        ({"HASHMATCH_MAX_THRESHOLDS": "md5=3"}, "no signal type matched by distance"),
        ({"HASHMATCH_MAX_THRESHOLD_PDQ": "200"}, "pdq bound must be 0-128"),
        ({"HASHMATCH_MAX_THRESHOLD_PDQ": "many"}, "HASHMATCH_MAX_THRESHOLD_PDQ"),
        ({"HASHMATCH_MAX_THRESHOLD_NOPE": "3"}, "'nope'"),
        (
            {"HASHMATCH_MAX_THRESHOLDS": "pdq=45", "HASHMATCH_MAX_THRESHOLD_PDQ": "40"},
            "contradicts",
        ),
    ],
)
def test_bad_threshold_bounds_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Settings.from_env(env)
