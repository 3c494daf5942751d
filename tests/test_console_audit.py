"""The console's audit page and the store's search behind it.

The search is checked against an oracle written apart from it (from the actor's own
organisation and each action's target, replayed over every row), on an instance whose names
collide across namespaces on purpose: an organisation called ``3`` beside key 3, an
organisation's name that is another's list, a peer name reused by a second organisation."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from console import PASSWORD, person, sign_in, staff_client
from dbs import BACKENDS, database
from hashmatch.hashsets.read import HashRow
from hashmatch.signals import Hash
from hashmatch.store import Role, StaffRole, Store
from hashmatch.store.audit import (
    KEY_ACTIONS,
    LIST_ACTIONS,
    ORGANISATION_ACTIONS,
    PEER_ACTIONS,
    search_all,
)
from hashmatch.store.schema import audit
from services import running_service

ORGS = ("acme", "beta", "3", "nobody")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database(request.param, tmp_path) as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()


def _pdq(seed: int) -> Hash:
    return Hash.from_hex("pdq", f"{seed:064x}")


def _import(store: Store, name: str, actor: str, seeds: range) -> None:
    rows = [HashRow(i + 1, _pdq(s), f"ref-{s}", ()) for i, s in enumerate(seeds)]
    store.entries.import_rows(name, rows, actor=actor)


def colliding_instance(store: Store) -> dict[str, str]:
    """Three organisations whose names collide across the log's namespaces, and one thing of
    every kind the log records. Returns the actors by short name."""
    store.lists.create("acme-a", owner="acme", category="ncii", actor="cli:root")
    store.lists.create("shared", owner="acme", category="ncii", actor="cli:root")
    store.lists.create("acme", owner="beta", category="ncii", actor="cli:root")  # = an org
    store.lists.create("3", owner="beta", category="ncii", actor="cli:root")  # = org, key id
    store.lists.create("three-l", owner="3", category="ncii", actor="cli:root")
    ka1, _ = store.keys.create("acme", frozenset({Role.ADMIN}), actor="cli:root")
    kb1, _ = store.keys.create("beta", frozenset({Role.ADMIN}), actor="cli:root")
    ka2, _ = store.keys.create("acme", frozenset({Role.MATCH}), actor="cli:root")
    k3, _ = store.keys.create("3", frozenset({Role.ADMIN}), actor="cli:root")
    assert ka2.id == 3  # acme's key 3, beside the organisation "3" and beta's list "3"
    ann, _, _ = store.users.create(
        "acme", "ann", StaffRole.ADMIN, actor="cli:root", password=PASSWORD
    )
    bob, _, _ = store.users.create(
        "beta", "bob", StaffRole.ADMIN, actor="cli:root", password=PASSWORD
    )
    cat, _, _ = store.users.create("3", "cat", StaffRole.VIEWER, actor=k3.actor, password=PASSWORD)
    store.lists.update("acme-a", actor=ann.actor, shared_with=["beta"])
    _import(store, "acme-a", ka1.actor, range(1, 6))
    _import(store, "acme", kb1.actor, range(10, 13))
    _import(store, "3", "cli:root", range(20, 22))
    _import(store, "three-l", k3.actor, range(30, 32))
    store.withdrawals.withdraw("acme-a", actor=ann.actor, reason="a mistake", references=["ref-1"])
    store.lists.answer_offer("acme-a", "beta", actor=kb1.actor, accept=True)
    store.keys.revoke(ka2.id, actor="cli:root")
    store.keys.suspend(kb1.id, actor="probe-guard", reason="probing", probed_list="acme-a")
    store.keys.reinstate(kb1.id, actor="cli:root", reason="it was a test")
    store.users.disable("cat", actor="cli:root")
    store.users.enable("cat", actor="cli:root")
    store.users.reset("cat", actor="cli:root")
    for _ in range(5):
        store.users.authenticate("bob", "a wrong password")  # user.locked, actor "console"
    store.peers.add(
        "feed", url="http://127.0.0.1:1", secret="hm_a", organisation="acme", actor=ka1.actor
    )
    store.peers.set_paused("feed", True, actor="cli:root")
    store.peers.remove("feed", actor="cli:root")
    store.peers.add("feed", url="http://127.0.0.1:2", secret="hm_b", organisation="beta", actor="t")
    store.peers.resync("feed", actor="exchange-verify")
    store.peers.add(
        "shared", url="http://127.0.0.1:3", secret="hm_c", organisation="beta", actor="t"
    )
    store.peers.set_paused("shared", True, actor="cli:root")
    store.lists.update("shared", actor="cli:root", description="collides with beta's peer")
    store.audit.note(ann.actor, "audit.export", "acme", {}, {"filters": {}})
    return {
        "ann": ann.actor,
        "bob": bob.actor,
        "cat": cat.actor,
        "ka1": ka1.actor,
        "kb1": kb1.actor,
        "k3": k3.actor,
    }


def all_rows(store: Store) -> list[dict[str, Any]]:
    with store.database.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(audit).order_by(audit.c.id)).mappings()]
    for row in rows:
        at = row["at"]
        row["at"] = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    return rows


def oracle(store: Store, rows: list[dict[str, Any]]) -> dict[int, set[str]]:
    """The organisations each row concerns, worked out by replaying the log: the actor's own
    organisation (``key:<id>:<org>``, ``user:<login>:<org>``), and the owner of its target
    read by the action's family."""
    list_owner = {info.name: info.owner for info in store.lists.all()}
    key_org = {str(key.id): key.organisation for key in store.keys.all()}
    peer_owner: dict[str, str] = {}
    owners: dict[int, set[str]] = {}
    for row in rows:
        found: set[str] = set()
        kind, _, rest = row["actor"].partition(":")
        if kind in {"key", "user"}:
            found.add(rest.rsplit(":", 1)[1])
        action, target = row["action"], row["target"]
        family = action.split(".")[0]
        if family in {"list", "entries", "share", "mirror", "false_positive"}:
            found.add(list_owner[target])
        elif action == "key.create" or family in {"user", "outcomes", "webhook", "audit"}:
            found.add(target)
        elif family == "key":
            found.add(key_org[target])
        elif family == "peer":
            if action == "peer.add":
                peer_owner[target] = row["details"]["new"]["organisation"]
            found.add(peer_owner[target])
        else:
            pytest.fail(f"the oracle does not know the action {action!r}")
        owners[row["id"]] = found
    return owners


def expected(
    rows: list[dict[str, Any]], owners: dict[int, set[str]], org: str, **filters: Any
) -> list[int]:
    wanted = []
    for row in rows:
        if org not in owners[row["id"]]:
            continue
        if filters.get("actor") is not None and row["actor"] != filters["actor"]:
            continue
        if filters.get("action") is not None and row["action"] != filters["action"]:
            continue
        if filters.get("list_name") is not None and (
            row["action"] not in LIST_ACTIONS or row["target"] != filters["list_name"]
        ):
            continue
        if filters.get("since") is not None and row["at"] < filters["since"]:
            continue
        if filters.get("until") is not None and row["at"] >= filters["until"]:
            continue
        wanted.append(row["id"])
    return sorted(wanted, reverse=True)


def paged(store: Store, org: str, limit: int, **filters: Any) -> list[int]:
    """Every id the search gives, page after page of ``limit``."""
    ids: list[int] = []
    before = None
    for _ in range(1000):
        page = store.audit.search(org, before_id=before, limit=limit, **filters)
        assert len(page) <= limit
        ids += [row["id"] for row in page]
        if len(page) < limit:
            return ids
        before = page[-1]["id"]
    raise AssertionError("pagination did not end")


def test_search_returns_exactly_the_organisations_rows(store: Store) -> None:
    actors = colliding_instance(store)
    rows = all_rows(store)
    owners = oracle(store, rows)
    # The collisions are really there: rows whose target names another thing of another
    # organisation's.
    targets = {(row["action"], row["target"]) for row in rows}
    assert ("list.create", "acme") in targets and ("user.create", "acme") in targets
    assert ("list.create", "3") in targets and ("user.create", "3") in targets
    assert any(a in KEY_ACTIONS and t == "3" for a, t in targets)
    assert ("peer.pause", "shared") in targets and ("list.update", "shared") in targets
    middle = rows[len(rows) // 2]["at"]
    filter_sets: list[dict[str, Any]] = [
        {},
        {"actor": "cli:root"},
        {"actor": "console"},
        {"actor": actors["kb1"]},
        {"actor": actors["ann"]},
        {"actor": actors["k3"]},
        {"actor": "nobody-at-all"},
        {"action": "key.revoke"},
        {"action": "peer.pause"},
        {"action": "user.create"},
        {"action": "share.accept"},
        {"action": "list.create", "actor": "cli:root"},
        {"list_name": "acme-a"},
        {"list_name": "acme"},
        {"list_name": "3"},
        {"list_name": "shared"},
        {"list_name": "acme-a", "actor": actors["kb1"]},
        {"since": middle},
        {"until": middle},
        {"since": middle, "until": middle + dt.timedelta(seconds=1), "action": "peer.add"},
    ]
    seen_any: set[str] = set()
    for org in ORGS:
        for filters in filter_sets:
            want = expected(rows, owners, org, **filters)
            for limit in (2, 50):
                got = paged(store, org, limit, **filters)
                assert got == want, (org, filters, limit)
            if want:
                seen_any.add(org)
    assert seen_any == {"acme", "beta", "3"}
    assert store.audit.search("nobody") == []
    # Every action the store wrote has a family the search knows.
    known = LIST_ACTIONS | ORGANISATION_ACTIONS | KEY_ACTIONS | PEER_ACTIONS
    assert {row["action"] for row in rows} <= known
    assert store.audit.actions() == sorted({row["action"] for row in rows})


def test_search_rows_are_whole_and_in_utc(store: Store) -> None:
    actors = colliding_instance(store)
    found = store.audit.search("acme", action="audit.export")
    assert len(found) == 1
    row = found[0]
    assert row["actor"] == actors["ann"] and row["target"] == "acme"
    assert row["details"] == {"filters": {}} and row["counts"] == {}
    assert dt.datetime.fromisoformat(row["at"]).utcoffset() == dt.timedelta(0)
    # search_all reads in batches and gives what one long page gives.
    every = [r["id"] for r in search_all(store.audit, "acme", batch=3)]
    assert every == [r["id"] for r in store.audit.search("acme", limit=1000)]
    assert len(every) > 3


def test_each_seek_is_an_index_search_on_sqlite(tmp_path: Path) -> None:
    """EXPLAIN QUERY PLAN of every statement a search runs, for the common filters: index
    seeks on ix_audit_actor_id or ix_audit_target only, never a scan of the table (SQLite has
    no statistics to choose by: the statement must leave it no bad choice)."""
    store = Store.open(f"sqlite:///{tmp_path / 'plan.db'}")
    actors = colliding_instance(store)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM audit" in statement and "LIMIT" in statement:
            statements.append((statement, params))

    event.listen(store.database.engine, "before_cursor_execute", capture)
    since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    for filters in (
        {},
        {"before_id": 10},
        {"actor": actors["ann"]},
        {"actor": "cli:root"},
        {"action": "key.revoke"},
        {"list_name": "acme-a"},
        {"since": since, "until": since + dt.timedelta(days=9999)},
    ):
        statements.clear()
        store.audit.search("acme", **filters)
        assert statements, filters
        raw = store.database.engine.raw_connection()
        try:
            for statement, params in statements:
                cursor = raw.cursor()
                cursor.execute("EXPLAIN QUERY PLAN " + statement, params)
                plan = [str(line[3]) for line in cursor.fetchall()]
                on_audit = [line for line in plan if re.search(r"\baudit\b", line)]
                assert on_audit, plan
                for line in on_audit:
                    assert re.match(
                        r"SEARCH audit USING (COVERING )?INDEX ix_audit_(actor_id|target) ", line
                    ), (filters, plan)
        finally:
            raw.close()
    store.close()


# --- the page --------------------------------------------------------------------------


def _insert(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.database.engine.begin() as conn:
        conn.execute(insert(audit), rows)


def _row(at: dt.datetime, actor: str, action: str, target: str, **counts: Any) -> dict[str, Any]:
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "counts": counts,
        "reason": None,
        "details": None,
    }


def _actions(html: str) -> list[str]:
    """The action column of the page's rows."""
    return re.findall(r'<td><span class="mono">([a-z_.]+)</span></td>', html)


def _older(html: str) -> str | None:
    found = re.search(r'href="(/console/audit\?[^"]*before=\d+[^"]*)" rel="next"', html)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.mark.parametrize("backend", BACKENDS)
def test_page_walks_every_own_row_once_and_no_other(backend: str, tmp_path: Path) -> None:
    with running_service(backend, tmp_path) as service:
        client = staff_client(service, "acme", "ann", StaffRole.VIEWER)
        person(service, "beta", "bob", StaffRole.ADMIN)
        start = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
        rows = []
        for i in range(130):
            rows.append(
                _row(start + dt.timedelta(minutes=i), "user:ann:acme", "user.password", "acme", n=i)
            )
            if i % 4 == 0:
                rows.append(_row(start, "user:bob:beta", "user.password", "beta", secret_of_beta=i))
        _insert(service.store, rows)
        seen: list[int] = []
        page_url: str | None = "/console/audit?action=user.password"
        pages = 0
        while page_url is not None:
            page = client.get(page_url)
            assert page.status_code == 200, page.text
            assert "secret_of_beta" not in page.text and "bob" not in page.text
            seen += [int(n) for n in re.findall(r'<span class="mono">n</span>: (\d+)', page.text)]
            page_url = _older(page.text)
            pages += 1
        assert sorted(seen) == list(range(130)) and len(seen) == 130
        assert seen == sorted(seen, reverse=True)
        assert pages == 3  # 50 a page
        # What no database can hold is refused before it reaches one (never a 500, nor an
        # export that breaks half way).
        for query in (
            "before=99999999999999999999999",
            "before=0",
            "action=%00",
            "actor=a%00b",
            "list=%00",
            "from=0001-01-01",
            "to=9999-12-31",
            "actor=" + "x" * 300,
        ):
            assert client.get(f"/console/audit?{query}").status_code == 422, query
            if not query.startswith("before"):
                assert client.get(f"/console/audit.csv?{query}").status_code == 422, query
        assert service.store.audit.search("acme", before_id=2**70) != []
        assert service.store.audit.search("acme", before_id=1) == []


def test_page_filters_dates_in_the_persons_time_zone(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path) as service:
        person(service, "acme", "ann", StaffRole.VIEWER)
        ann = service.store.users.get("ann")
        service.store.users.set_preferences(ann.id, locale="en", timezone="Asia/Seoul")
        client = sign_in(service, "ann")
        _insert(
            service.store,
            [
                # 1 March 23:00 in Seoul
                _row(
                    dt.datetime(2025, 3, 1, 14, tzinfo=dt.UTC),
                    ann.actor,
                    "user.password",
                    "acme",
                    n=1,
                ),
                # 2 March 01:00 in Seoul (still 1 March in UTC)
                _row(
                    dt.datetime(2025, 3, 1, 16, tzinfo=dt.UTC),
                    ann.actor,
                    "user.password",
                    "acme",
                    n=2,
                ),
                # 2 March 23:59 in Seoul
                _row(
                    dt.datetime(2025, 3, 2, 14, 59, tzinfo=dt.UTC),
                    ann.actor,
                    "user.password",
                    "acme",
                    n=3,
                ),
                # 3 March 00:00 in Seoul
                _row(
                    dt.datetime(2025, 3, 2, 15, tzinfo=dt.UTC),
                    ann.actor,
                    "user.password",
                    "acme",
                    n=4,
                ),
            ],
        )
        page = client.get("/console/audit?from=2025-03-02&to=2025-03-02")
        assert page.status_code == 200
        assert re.findall(r'<span class="mono">n</span>: (\d+)', page.text) == ["3", "2"]
        page = client.get("/console/audit?from=2025-03-03")
        assert re.findall(r'<span class="mono">n</span>: (\d+)', page.text) == ["4"]
        assert client.get("/console/audit?from=yesterday").status_code == 422


def test_page_filters_and_escapes(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path) as service:
        client = staff_client(service, "acme", "ann", StaffRole.ANALYST)
        store = service.store
        store.lists.create("acme-a", owner="acme", category="ncii", actor="cli:root")
        store.lists.create("beta-list", owner="beta", category="ncii", actor="cli:root")
        _import(store, "acme-a", "cli:root", range(1, 4))
        store.withdrawals.withdraw(
            "acme-a",
            actor="user:ann:acme",
            reason="<script>alert(1)</script>",
            references=["ref-1"],
        )
        page = client.get("/console/audit?list=acme-a")
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert _actions(page.text) == ["entries.withdraw", "entries.import", "list.create"]
        # The person filter: the select offers the organisation's people and keys.
        assert 'value="user:ann:acme"' in page.text
        page = client.get("/console/audit?who=user:ann:acme&action=entries.import")
        assert "No audit rows match these filters." in page.text
        page = client.get("/console/audit?actor=cli:root&list=acme-a")
        assert _actions(page.text) == ["entries.import", "list.create"]
        page = client.get("/console/audit?action=list.create")
        assert _actions(page.text) == ["list.create"]  # acme-a's, not beta-list's
        # Another organisation's list is not found, as a list that does not exist.
        assert client.get("/console/audit?list=beta-list").status_code == 404
        assert client.get("/console/audit?list=no-such-list").status_code == 404
        assert client.get("/console/audit.csv?list=beta-list").status_code == 404
        assert client.get("/console/audit?before=x").status_code == 422
        # Signed out: the sign-in page.
        anonymous = service.client.get("/console/audit", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"].startswith("/console/login")


def test_csv_export_streams_every_row_in_utc_and_is_audited(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path) as service:
        client = staff_client(service, "acme", "ann", StaffRole.VIEWER)
        person(service, "beta", "bob", StaffRole.VIEWER)
        start = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
        rows = [
            _row(start + dt.timedelta(seconds=i), "user:ann:acme", "user.password", "acme", n=i)
            for i in range(2300)  # more than two of the export's batches
        ]
        rows += [_row(start, "user:bob:beta", "user.password", "beta", n=-1) for _ in range(300)]
        rows.append({**_row(start, "cli:root", "user.reset", "acme"), "reason": '=HYPERLINK("x")'})
        _insert(service.store, rows)
        want = [r["id"] for r in service.store.audit.search("acme", limit=1000)]
        answer = client.get("/console/audit.csv")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        assert answer.headers["content-disposition"].startswith("attachment;")
        assert answer.headers["cache-control"] == "no-store"
        table = list(csv.reader(io.StringIO(answer.text)))
        assert table[0] == ["id", "at", "actor", "action", "target", "counts", "reason", "details"]
        body = table[1:]
        ids = [int(line[0]) for line in body]
        assert ids == sorted(set(ids), reverse=True)
        own = {r["id"] for r in search_all(service.store.audit, "acme")}
        assert set(ids) == own and len(ids) == 2300 + 1 + 1 + 1  # + create, reset, the export
        assert set(want) <= set(ids)
        assert all(line[2] != "user:bob:beta" for line in body)
        assert all(line[1].endswith("+00:00") for line in body)
        first = next(line for line in body if line[5] == '{"n": 0}')
        assert first[1] == "2025-03-01T00:00:00+00:00"
        # A spreadsheet does not run what a reason says.
        reset = next(line for line in body if line[3] == "user.reset")
        assert reset[6] == '\'=HYPERLINK("x")'
        # The export is in the log, under the person, with its filters.
        export = service.store.audit.search("acme", action="audit.export")
        assert [(r["actor"], r["target"]) for r in export] == [("user:ann:acme", "acme")]
        assert ids[0] == export[0]["id"]
        filtered = client.get("/console/audit.csv?action=user.reset&from=2025-03-01")
        assert [line[3] for line in list(csv.reader(io.StringIO(filtered.text)))[1:]] == [
            "user.reset"
        ]
        exports = service.store.audit.search("acme", action="audit.export")
        assert exports[0]["details"] == {"filters": {"action": "user.reset", "from": "2025-03-01"}}
