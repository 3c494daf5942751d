"""`hashmatch lists|match|audit` end to end, as subprocesses on a real SQLite store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import encode, hashmatch_env, natural_image, run_hashmatch


def cli(
    data_dir: Path, *args: str | Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return run_hashmatch(*args, env=hashmatch_env(data_dir=data_dir), stdin=stdin)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(4):
        (folder / f"p{seed}.jpg").write_bytes(encode(natural_image(seed=seed), "JPEG", quality=90))
    return folder


def test_agency_pipeline_hash_import_match_withdraw_export(tmp_path: Path, photos: Path) -> None:
    data = tmp_path / "index"
    created = cli(
        data,
        "lists",
        "create",
        "ncii-kr",
        "--category",
        "ncii",
        "--source",
        "KCSC",
        "--jurisdiction",
        "KR",
        "--owner",
        "kcsc",
        "--actor",
        "kcsc:alice",
    )
    assert created.returncode == 0, created.stderr
    hashed = cli(data, "hash", photos, "--format", "csv", "-a", "pdq,md5")
    imported = cli(data, "lists", "import", "ncii-kr", "-", stdin=hashed.stdout)
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert (report["added"], report["duplicates"], report["rejected"]) == (8, 0, 0)
    again = json.loads(cli(data, "lists", "import", "ncii-kr", "-", stdin=hashed.stdout).stdout)
    assert (again["added"], again["duplicates"]) == (0, 8)

    # a re-encoded copy matches by PDQ, an unrelated image does not match
    from PIL import Image

    copy = tmp_path / "copy.png"
    Image.open(photos / "p2.jpg").resize((400, 300)).save(copy)
    other = tmp_path / "other.png"
    other.write_bytes(encode(natural_image(seed=99), "PNG"))
    matched = json.loads(cli(data, "match", copy, other, "--json").stdout)
    assert matched[0]["match"] and {m["algorithm"] for m in matched[0]["matches"]} == {"pdq"}
    assert matched[0]["matches"][0]["list"] == "ncii-kr"
    assert not matched[1]["match"]
    flipped = tmp_path / "flipped.png"
    Image.open(photos / "p1.jpg").transpose(Image.Transpose.ROTATE_90).save(flipped)
    rotated = json.loads(cli(data, "match", flipped, "--json").stdout)[0]
    assert rotated["match"] and rotated["matches"][0]["algorithm"] == "pdq"

    tx = cli(data, "hash", photos / "p2.jpg", "-f", "tx", "-a", "pdq").stdout
    (tmp_path / "withdraw.txt").write_bytes(tx)
    withdrawn = cli(
        data,
        "lists",
        "withdraw",
        "ncii-kr",
        "--file",
        tmp_path / "withdraw.txt",
        "--reason",
        "victim request",
        "--actor",
        "kcsc:bob",
    )
    assert json.loads(withdrawn.stdout)["withdrawn"] == 1
    assert not json.loads(cli(data, "match", copy, "--json").stdout)[0]["match"]

    exported = cli(data, "lists", "export", "ncii-kr", "--format", "jsonl").stdout.decode()
    rows = [json.loads(line) for line in exported.splitlines()]
    assert len(rows) == 7 and all(r["withdrawn_at"] is None for r in rows)
    with_tombstones = cli(
        data, "lists", "export", "ncii-kr", "--include-withdrawn", "--format", "csv"
    )
    cli(data, "lists", "create", "copy", "--category", "ncii", "--owner", "kcsc")
    mirrored = json.loads(
        cli(data, "lists", "import", "copy", "-", stdin=with_tombstones.stdout).stdout
    )
    assert (mirrored["added"], mirrored["rejected"]) == (7, 1)  # the tombstone is not revived
    assert "withdrawn" in mirrored["errors"][0]["reason"]

    audit = json.loads(cli(data, "audit", "--list", "ncii-kr").stdout)
    assert [a["action"] for a in audit] == [
        "entries.withdraw",
        "entries.import",
        "entries.import",
        "list.create",
    ]
    assert audit[0]["actor"] == "kcsc:bob" and audit[0]["reason"] == "victim request"
    assert cli(data, "audit", "--list", "ncii-k").returncode == 66  # a typo is not an empty trail


def test_strict_import_and_errors_have_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "index"
    create = ("lists", "create", "l", "--category", "csam")
    assert cli(data, *create).returncode == 2  # an owner is required: no list owned by nobody
    assert b"--owner" in cli(data, *create).stderr
    assert cli(data, *create, "--owner", "org").returncode == 0
    assert cli(data, *create, "--owner", "org").returncode == 73
    bad = b"pdq " + b"a" * 64 + b"\npdq 1234\n"
    strict = cli(data, "lists", "import", "l", "-", "--strict", stdin=bad)
    assert strict.returncode == 65
    assert json.loads(strict.stdout)["rejected"] == 1
    shown = json.loads(cli(data, "lists", "show", "l").stdout)
    assert shown["live_entries"] == 0
    lenient = json.loads(cli(data, "lists", "import", "l", "-", stdin=bad).stdout)
    assert (lenient["added"], lenient["rejected"]) == (1, 1)
    assert cli(data, "lists", "show", "missing").returncode == 66
    assert (
        cli(data, "lists", "create", "x", "--category", "csam", "--kind", "maybe").returncode == 2
    )
    bad_owner = cli(data, "lists", "create", "x", "--category", "csam", "--owner", "Кcsc")
    assert bad_owner.returncode == 2 and b"owner" in bad_owner.stderr


def test_unreadable_inputs_are_named_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "index"
    cli(data, "lists", "create", "l", "--category", "csam", "--owner", "org")
    missing = tmp_path / "missing.csv"
    for args in (
        ("lists", "import", "l", missing),
        ("lists", "withdraw", "l", "--file", missing, "--reason", "r"),
        ("match", missing),
    ):
        result = cli(data, *args)
        assert result.returncode == 66, args
        assert result.stderr.decode().strip() == (
            f"hashmatch: cannot read {missing}: No such file or directory"
        )
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    refused = cli(data, "match", not_image)
    assert refused.returncode == 65
    assert refused.stderr.decode().strip() == (
        f"hashmatch: {not_image}: text is not a supported image format"
    )
