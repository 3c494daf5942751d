"""Uploading a hash-set file through the console: staged, checked (the exact report), imported
only on commit (audited under the person, once), and only by and for the person who uploaded
it, to a list their organisation owns."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from browser import (
    ConsoleServer,
    Pages,
    check_accessibility,
    screenshot,
)
from conftest import random_hexes
from console import PASSWORD, csrf_of, staff_client
from dbs import BACKENDS
from hashmatch.errors import Conflict, NotFound
from hashmatch.store import Role, StaffRole
from hashmatch.store.schema import audit, staged_chunks, staged_uploads
from hashmatch.store.staging import CHUNK_BYTES
from services import Service, running_service

LIST = "ncii"
LIVE, NEW_1, NEW_2, WITHDRAWN = random_hexes(4, seed=41)
MD5 = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(request.param, tmp_path) as running:
        yield running


@pytest.fixture
def owner(service: Service) -> dict[str, str]:
    """kcsc's admin key; its list ``ncii`` holds LIVE and had WITHDRAWN withdrawn."""
    key = service.key("kcsc", Role.ADMIN)
    service.create_list(key, LIST)
    service.add(key, LIST, ("pdq", LIVE, "live-1"), ("pdq", WITHDRAWN, "gone-1"))
    withdrawn = service.post(
        f"/v1/lists/{LIST}/withdrawals",
        key,
        json={"hashes": [{"algorithm": "pdq", "value": WITHDRAWN}], "reason": "appeal upheld"},
    )
    assert withdrawn.status_code == 200, withdrawn.text
    return key


def sample_file() -> bytes:
    rows = [
        "algorithm,hash,reference,labels",
        f"pdq,{LIVE},again-live,",  # 2: already in the list
        f"pdq,{NEW_1},new-1,a;b",  # 3: new
        f"md5,{MD5},new-2,",  # 4: new
        f"pdq,{NEW_1},new-1-again,",  # 5: repeated within the file
        f"pdq,{WITHDRAWN},back-again,",  # 6: previously withdrawn
        "pdq,zz,bad-hex,",  # 7: bad
        "",  # blank lines are skipped, and still counted as lines
        "pdq,only-three,x",  # 9: bad
        '{"algorithm": "pdq", "hash": "00"}',  # 10: bad
    ]
    return ("\n".join(rows) + "\n").encode()


EXPECTED_COUNTS = {
    "valid": 5,
    "new": 2,
    "already_listed": 1,
    "repeated": 1,
    "previously_withdrawn": 1,
    "rejected": 3,
}
EXPECTED_BAD = [
    (7, "pdq hash must be 64 hex digits, got 2"),
    (9, "expected 4 CSV fields, got 3"),
    (10, "line looks like JSON, but this input is csv"),
]


def upload_page(name: str = LIST) -> str:
    return f"/console/lists/{name}/upload"


def upload(
    client: TestClient, content: bytes, *, name: str = LIST, filename: str = "set.csv"
) -> Any:
    page = client.get(upload_page(name))
    assert page.status_code == 200, page.text
    return client.post(
        upload_page(name),
        data={"csrf": csrf_of(page.text)},
        files={"file": (filename, content, "text/csv")},
        follow_redirects=False,
    )


def staged(client: TestClient, content: bytes, **kwargs: Any) -> str:
    """Upload ``content``; returns the report page's path."""
    response = upload(client, content, **kwargs)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert re.fullmatch(r"/console/uploads/[0-9a-f]{32}", location), location
    return str(location)


def counts_on(html: str) -> dict[str, int]:
    found = re.findall(r'data-count="(\w+)">([\d,]+)<', html)
    return {name: int(value.replace(",", "")) for name, value in found}


def bad_lines_on(html: str) -> list[tuple[int, str]]:
    table = html.split('id="bad-lines"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr><td class="num">([\d,]+)</td><td>(.*?)</td></tr>', table)
    return [(int(line.replace(",", "")), reason.replace("&#39;", "'")) for line, reason in rows]


def post_button(client: TestClient, report_path: str, action: str) -> Any:
    page = client.get(report_path)
    assert page.status_code == 200, page.text
    return client.post(
        f"{report_path}/{action}", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )


def live_hashes(service: Service, key: dict[str, str]) -> list[str]:
    response = service.client.get(f"/v1/lists/{LIST}/entries", headers=key)
    assert response.status_code == 200, response.text
    return sorted(entry["hash"] for entry in response.json()["entries"])


def matches(service: Service, key: dict[str, str], value: str) -> bool:
    service.follow()
    response = service.post(
        "/v1/match/hashes", key, json={"hashes": [{"algorithm": "pdq", "value": value}]}
    )
    assert response.status_code == 200, response.text
    return bool(response.json()["match"])


def staged_count(service: Service) -> tuple[int, int]:
    with service.store.database.engine.connect() as conn:
        uploads = conn.execute(select(func.count()).select_from(staged_uploads)).scalar_one()
        chunks = conn.execute(select(func.count()).select_from(staged_chunks)).scalar_one()
    return int(uploads), int(chunks)


def test_a_file_is_checked_exactly_and_imported_only_on_commit_under_the_person(
    service: Service, owner: dict[str, str]
) -> None:
    matcher = service.key("kcsc", Role.MATCH)
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    form = client.get(upload_page())
    assert 'enctype="multipart/form-data"' in form.text
    assert 'data-progress="upload-progress"' in form.text and 'class="dropzone"' in form.text
    # The token is the form's first field.
    fields = re.findall(
        r"<(?:input|select|textarea)[^>]*name=\"(\w+)\"",
        form.text.split('data-progress="upload-progress"', 1)[1],
    )
    assert fields[:2] == ["csrf", "file"]

    report_path = staged(client, sample_file())
    page = client.get(report_path)
    assert page.status_code == 200, page.text
    assert counts_on(page.text) == EXPECTED_COUNTS
    assert bad_lines_on(page.text) == EXPECTED_BAD
    assert "Commit 2 entries" in page.text and "Discard" in page.text
    assert "never added back by an import" in page.text
    assert "set.csv" in page.text

    # Nothing imported before commit: the list holds what it held, nothing matches.
    assert live_hashes(service, owner) == [LIVE]
    assert not matches(service, matcher, NEW_1)
    assert staged_count(service)[0] == 1

    committed = post_button(client, report_path, "commit")
    assert committed.status_code == 303, committed.text
    assert committed.headers["location"] == f"/console/lists/{LIST}?imported=2"
    assert live_hashes(service, owner) == sorted([LIVE, NEW_1, MD5])
    md5 = service.client.get(f"/v1/lists/{LIST}/entries", headers=owner).json()["entries"]
    assert sorted((e["algorithm"], e["reference"]) for e in md5) == [
        ("md5", "new-2"),
        ("pdq", "live-1"),
        ("pdq", "new-1"),
    ]
    assert next(e for e in md5 if e["reference"] == "new-1")["labels"] == ["a", "b"]
    assert matches(service, matcher, NEW_1)
    assert not matches(service, matcher, WITHDRAWN)  # a withdrawal sticks
    assert staged_count(service) == (0, 0)

    with service.store.database.engine.connect() as conn:
        imports = conn.execute(
            select(audit.c.actor, audit.c.counts).where(audit.c.action == "entries.import")
        ).all()
    # The API's own import of the fixture, then the person's: one, not two (no dry run kept).
    assert [actor for actor, _ in imports][1:] == ["user:alice:kcsc"]
    counts = imports[-1][1]
    assert (counts["added"], counts["duplicates"], counts["previously_withdrawn"]) == (2, 2, 1)
    assert counts["rejected"] == 3

    # A second commit imports nothing.
    again = client.post(
        f"{report_path}/commit", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert again.status_code == 404
    assert (
        len(service.client.get(f"/v1/lists/{LIST}/entries", headers=owner).json()["entries"]) == 3
    )
    assert client.get(report_path).status_code == 404


def test_a_large_file_is_staged_in_chunks_and_streamed_back(
    service: Service, owner: dict[str, str]
) -> None:
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    hexes = random_hexes(40_000, seed=7)
    content = "".join(f"pdq {value} ref-{n}\n" for n, value in enumerate(hexes)).encode()
    chunks = -(-len(content) // CHUNK_BYTES)
    assert chunks == 4  # lines cross chunk boundaries
    report_path = staged(client, content, filename="big.txt")
    assert staged_count(service) == (1, chunks)
    page = client.get(report_path)
    assert counts_on(page.text) == {
        "valid": 40_000,
        "new": 40_000,
        "already_listed": 0,
        "repeated": 0,
        "previously_withdrawn": 0,
        "rejected": 0,
    }
    committed = post_button(client, report_path, "commit")
    assert committed.headers["location"] == f"/console/lists/{LIST}?imported=40000"
    listed = service.store.entries.listed(LIST)
    assert {(e.hash.hex, e.reference) for e in listed} == {
        (LIVE, "live-1"),
        *((value, f"ref-{n}") for n, value in enumerate(hexes)),
    }


def test_only_the_uploader_sees_commits_or_discards_an_upload(
    service: Service, owner: dict[str, str]
) -> None:
    alice = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    bob = staff_client(service, "kcsc", "bob", StaffRole.ADMIN)
    report_path = staged(alice, sample_file())
    token = csrf_of(bob.get("/console/").text)
    assert bob.get(report_path).status_code == 404
    for action in ("commit", "discard"):
        refused = bob.post(f"{report_path}/{action}", data={"csrf": token}, follow_redirects=False)
        assert refused.status_code == 404
    assert live_hashes(service, owner) == [LIVE]
    # Discarded by its owner: gone, nothing imported.
    discarded = post_button(alice, report_path, "discard")
    assert discarded.status_code == 303
    assert discarded.headers["location"] == f"/console/lists/{LIST}/upload?discarded=1"
    assert "was discarded" in alice.get(discarded.headers["location"]).text
    assert staged_count(service) == (0, 0)
    assert alice.get(report_path).status_code == 404
    assert live_hashes(service, owner) == [LIVE]


def test_uploads_without_the_token_first_are_refused_and_nothing_is_staged(
    service: Service, owner: dict[str, str]
) -> None:
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    token = csrf_of(client.get(upload_page()).text)
    files = {"file": ("set.csv", sample_file(), "text/csv")}
    no_token = client.post(upload_page(), files=files, follow_redirects=False)
    assert no_token.status_code == 403
    wrong = client.post(upload_page(), data={"csrf": "x" * 43}, files=files, follow_redirects=False)
    assert wrong.status_code == 403
    # The right token after the file is too late: the file would have been read first.
    boundary = "hm-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="set.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n".encode()
        + sample_file()
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n'
        f"{token}\r\n--{boundary}--\r\n".encode()
    )
    late = client.post(
        upload_page(),
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        follow_redirects=False,
    )
    assert late.status_code == 403
    other_site = client.post(
        upload_page(),
        data={"csrf": token},
        files=files,
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other_site.status_code == 403
    assert staged_count(service) == (0, 0)
    assert live_hashes(service, owner) == [LIVE]


def test_viewers_and_other_organisations_cannot_upload(
    service: Service, owner: dict[str, str]
) -> None:
    theirs = service.key("ncc", Role.ADMIN)
    service.create_list(theirs, "ncc-list")
    viewer = staff_client(service, "kcsc", "victor", StaffRole.VIEWER)
    assert viewer.get(upload_page()).status_code == 403
    token = csrf_of(viewer.get("/console/").text)
    refused = viewer.post(
        upload_page(),
        data={"csrf": token},
        files={"file": ("set.csv", sample_file(), "text/csv")},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    analyst = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    assert analyst.get(upload_page("ncc-list")).status_code == 404
    assert analyst.get(upload_page("no-such-list")).status_code == 404
    token = csrf_of(analyst.get("/console/").text)
    other = analyst.post(
        upload_page("ncc-list"),
        data={"csrf": token},
        files={"file": ("set.csv", sample_file(), "text/csv")},
        follow_redirects=False,
    )
    assert other.status_code == 404
    assert staged_count(service) == (0, 0)
    entries = service.client.get("/v1/lists/ncc-list/entries", headers=theirs).json()["entries"]
    assert entries == []


def test_an_empty_file_is_a_form_error_and_stale_uploads_are_purged(
    service: Service, owner: dict[str, str]
) -> None:
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    empty = upload(client, b"")
    assert empty.status_code == 422
    assert 'role="alert"' in empty.text and "The file is empty" in empty.text
    assert staged_count(service) == (0, 0)

    old = staged(client, sample_file())
    with service.store.database.write_transaction() as conn:
        conn.execute(
            update(staged_uploads).values(
                created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
            )
        )
    assert client.get(old).status_code == 200  # old, but nothing new was staged yet
    fresh = staged(client, sample_file())
    assert client.get(old).status_code == 404
    assert client.get(fresh).status_code == 200
    assert staged_count(service)[0] == 1


def test_in_a_browser_the_file_goes_up_with_progress_and_commits(
    console_server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest
) -> None:
    """The real page in Chromium: the file input in its drop zone, the script's upload with a
    progress bar (which then shows the report), the report, the commit; axe on each page."""
    key = {"Authorization": f"Bearer {console_server.api_key('kcsc', 'admin')}"}
    created = httpx.post(
        f"{console_server.url}/v1/lists", json={"name": LIST, "category": "ncii"}, headers=key
    )
    assert created.status_code == 201, created.text
    console_server.create_user("alice", "kcsc", "analyst", password=PASSWORD)
    page = pages()
    page.goto(f"{console_server.url}/console/login")
    page.get_by_label("Login", exact=True).fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.goto(f"{console_server.url}{upload_page()}")
    screenshot(page, request.node.name, "upload-form")
    check_accessibility(page, "upload-form")
    page.get_by_label("Hash-set file").set_input_files(
        {"name": "set.csv", "mimeType": "text/csv", "buffer": sample_file()}
    )
    with page.expect_navigation(url=re.compile(r".*/console/uploads/[0-9a-f]{32}$")):
        page.get_by_role("button", name="Upload and check").click()
    counts = counts_on(page.content())
    assert counts == {**EXPECTED_COUNTS, "new": 4, "already_listed": 0, "previously_withdrawn": 0}
    screenshot(page, request.node.name, "report")
    check_accessibility(page, "upload-report")
    with page.expect_navigation(url=re.compile(rf".*/console/lists/{LIST}\?imported=4$")):
        page.get_by_role("button", name="Commit 4 entries").click()
    entries = httpx.get(f"{console_server.url}/v1/lists/{LIST}/entries", headers=key).json()
    assert sorted(e["reference"] for e in entries["entries"]) == [
        "again-live",
        "back-again",
        "new-1",
        "new-2",
    ]


def test_two_commits_at_once_import_once(service: Service, owner: dict[str, str]) -> None:
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    hexes = random_hexes(5_000, seed=12)
    report_path = staged(client, "".join(f"pdq {h}\n" for h in hexes).encode())
    upload_id = report_path.rsplit("/", 1)[1]
    user = service.store.users.get("alice", "kcsc")
    outcomes: list[object] = []

    def commit() -> None:
        try:
            outcomes.append(
                service.store.staging.commit(upload_id, user.id, actor=user.actor).added
            )
        except (Conflict, NotFound) as refused:
            outcomes.append(type(refused))

    threads = [threading.Thread(target=commit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [o for o in outcomes if isinstance(o, int)] == [5_000], outcomes
    assert all(o in (Conflict, NotFound) for o in outcomes if not isinstance(o, int))
    assert len(list(service.store.entries.listed(LIST))) == 1 + 5_000
    assert staged_count(service) == (0, 0)
