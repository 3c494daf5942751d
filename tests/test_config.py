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
