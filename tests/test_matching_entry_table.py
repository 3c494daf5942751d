from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashmatch.matching.entry_table import EntryMeta, EntryTable


def rows() -> list[tuple[int, int, str | None, str, int | None]]:
    return [
        (30, 2, "ref-30", json.dumps(["a;b", "c|d"]), 7001),  # a mirrored entry
        (10, 1, None, "[]", None),
        (20, 1, "東京 – référence", json.dumps(["x"]), None),
    ]


def test_lookup_add_discard_and_compact(tmp_path: Path) -> None:
    table = EntryTable.build(rows())
    assert len(table) == 3
    assert table.get(10) == EntryMeta(1, None, ())
    assert table.get(20) == EntryMeta(1, "東京 – référence", ("x",))
    assert table.get(30) == EntryMeta(2, "ref-30", ("a;b", "c|d"), 7001)
    assert table.get(15) is None and table.get(99) is None
    table.add(40, EntryMeta(3, "new", ("n",), 9))
    table.discard(20)
    table.discard(12345)  # absent: ignored
    assert table.get(40) == EntryMeta(3, "new", ("n",), 9) and table.get(20) is None
    assert len(table) == 3
    table.add(20, EntryMeta(1, "back", ()))  # re-added after a discard
    compacted = table.compact()
    assert [compacted.get(i) for i in (10, 20, 30, 40)] == [
        EntryMeta(1, None, ()),
        EntryMeta(1, "back", ()),
        EntryMeta(2, "ref-30", ("a;b", "c|d"), 7001),
        EntryMeta(3, "new", ("n",), 9),
    ]
    path = str(tmp_path / "entries.table")
    table.save(path)
    loaded = EntryTable.load(path)
    assert [loaded.get(i) for i in (10, 20, 30, 40, 50)] == [
        compacted.get(i) for i in (10, 20, 30, 40, 50)
    ]


def test_empty_table_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "entries.table")
    EntryTable().save(path)
    assert len(EntryTable.load(path)) == 0


def test_inconsistent_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "entries.table"
    EntryTable.build(rows()).save(str(path))
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:-8]))
    with pytest.raises(ValueError):
        EntryTable.load(str(path))
