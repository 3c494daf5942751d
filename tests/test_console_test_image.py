"""Testing an image through the console: the API's reading, hashing and matching, the lists the
person's organisation may match and no others, media errors as form errors, and nothing
written anywhere."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from playwright.sync_api import expect

from browser import (
    ConsoleServer,
    Pages,
    check_accessibility,
    screenshot,
)
from conftest import encode, natural_image
from console import PASSWORD, csrf_of, staff_client
from hashmatch.store import Role, StaffRole
from services import Service, running_service

PAGE = "/console/test"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running_service("sqlite", tmp_path) as running:
        yield running


def photo(seed: int = 3, flipped: bool = False) -> bytes:
    image = natural_image(seed=seed)
    if flipped:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return encode(image, "JPEG", quality=90)


def listed_photo(service: Service, org: str = "kcsc", name: str = "ncii-kr", **fields: Any) -> str:
    """The photo's PDQ hash (computed by ``POST /v1/hash``) listed in ``org``'s list ``name``
    as ``case-7``; returns the hash."""
    key = service.key(org, Role.ADMIN)
    hashed = service.post(
        "/v1/hash", key, files={"file": ("photo.jpg", photo(), "image/jpeg")}
    ).json()
    value = str(hashed["hashes"]["pdq"]["value"])
    service.create_list(key, name, category="ncii", **fields)
    service.add(key, name, ("pdq", value, "case-7"))
    service.follow()
    return value


def submit(client: TestClient, data: bytes, filename: str = "upload.jpg") -> Any:
    token = csrf_of(client.get(PAGE).text)
    return client.post(
        PAGE,
        data={"csrf": token},
        files={"file": (filename, data, "image/jpeg")},
        follow_redirects=False,
    )


def matches_table(html: str) -> str:
    assert 'id="test-matches"' in html, html
    return html.split('id="test-matches"', 1)[1].split("</table>", 1)[0]


def test_the_form_says_images_are_never_stored(service: Service) -> None:
    client = staff_client(service, "kcsc", "vera", StaffRole.VIEWER)
    page = client.get(PAGE)
    assert page.status_code == 200
    assert "processed in memory and never stored" in page.text
    assert 'enctype="multipart/form-data"' in page.text
    form = page.text.split('action="/console/test"', 1)[1]
    assert re.findall(r'name="(\w+)"', form)[:2] == ["csrf", "file"]


def test_a_flipped_copy_of_a_listed_photo_is_found_with_its_variant(service: Service) -> None:
    value = listed_photo(service)
    client = staff_client(service, "kcsc", "vera", StaffRole.VIEWER)  # any signed-in person
    response = submit(client, photo(flipped=True))
    assert response.status_code == 200, response.text
    assert "This image matches 1 entry." in response.text
    row = matches_table(response.text)
    assert "ncii-kr" in row and "case-7" in row and "pdq" in row
    assert "<code>flip_horizontal</code>" in row and "Flipped horizontally" in row
    assert "<td>ncii</td>" in row  # the list's category
    # Its own list: the exact distance, small.
    distance = int(re.findall(r'<td class="num">(\d+)</td>', row)[0])
    assert distance <= 16
    # The hashes computed, with PDQ's quality.
    hashes = response.text.split('id="test-hashes"', 1)[1].split("</table>", 1)[0]
    assert "pdq" in hashes and "md5" in hashes and "sha256" in hashes
    assert re.search(r"<code class=\"hash\">[0-9a-f]{64}</code>", hashes)
    assert value not in hashes  # the flipped image's own PDQ is not the listed one


def test_an_unrelated_image_finds_nothing(service: Service) -> None:
    listed_photo(service)
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    response = submit(client, photo(seed=11))
    assert response.status_code == 200
    assert "No match: this image matches nothing" in response.text
    assert 'id="test-matches"' not in response.text


def test_another_organisations_list_is_used_only_once_shared_and_accepted(
    service: Service,
) -> None:
    listed_photo(service, shared_with=["ncc"])
    client = staff_client(service, "ncc", "nora", StaffRole.ANALYST)
    offered = submit(client, photo(flipped=True))
    assert "No match" in offered.text  # offered, not accepted: not matched
    other = staff_client(service, "third", "tom", StaffRole.ADMIN)
    assert "No match" in submit(other, photo()).text  # never offered
    accepted = service.post("/v1/shares/ncii-kr/accept", service.key("ncc", Role.ADMIN))
    assert accepted.status_code == 200, accepted.text
    service.follow()
    found = submit(client, photo(flipped=True))
    row = matches_table(found.text)
    assert "ncii-kr" in row and "(kcsc)" in row and "flip_horizontal" in row
    # Another organisation's list: a band, never the exact distance (as in the API).
    assert "within the threshold" in row or ">exact<" in row
    assert not re.findall(r'<td class="num">(\d+)</td>', row)
    assert "No match" in submit(other, photo()).text


def test_nothing_is_written_to_disk(service: Service, tmp_path: Path) -> None:
    listed_photo(service)
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)

    def files() -> set[str]:
        return {
            str(p)
            for p in tmp_path.rglob("*")
            if p.is_file() and "-wal" not in p.name and "-shm" not in p.name
        }

    big = encode(natural_image(1000, 750, seed=8), "PNG")
    assert len(big) > 1024 * 1024  # over Starlette's in-memory spooling threshold
    # The person's own session row is written by signing in; warm up before listing.
    submit(client, photo())
    temp_before = set(Path(tempfile.gettempdir()).iterdir())
    before = files()
    for data in (big, photo(flipped=True), b"not an image at all"):
        response = submit(client, data, filename="secret-name.jpg")
        assert response.status_code < 500
    assert files() == before
    assert set(Path(tempfile.gettempdir()).iterdir()) - temp_before == set()


@pytest.mark.parametrize(
    ("data", "status", "text"),
    [
        (encode(natural_image(seed=2), "JPEG")[:5000], 422, "corrupt or cut short"),
        (b"", 422, "The file is empty"),
        (b"%PDF-1.4\n" + b"0" * 4000, 415, "not supported"),
        (b"\xff\xd8\xff" + b"0" * 2_100_000, 413, "too large"),
    ],
)
def test_media_errors_are_form_errors_with_their_status(
    service: Service, data: bytes, status: int, text: str
) -> None:
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    response = submit(client, data)
    assert response.status_code == status, response.text
    assert 'role="alert"' in response.text and text in response.text
    assert 'action="/console/test"' in response.text  # the form again, to try another


def test_a_post_without_the_token_is_refused(service: Service) -> None:
    listed_photo(service)
    client = staff_client(service, "kcsc", "alice", StaffRole.ANALYST)
    files = {"file": ("a.jpg", photo(), "image/jpeg")}
    refused = client.post(PAGE, files=files, follow_redirects=False)
    assert refused.status_code == 403
    assert "case-7" not in refused.text
    wrong = client.post(PAGE, data={"csrf": "nope"}, files=files, follow_redirects=False)
    assert wrong.status_code == 403 and "case-7" not in wrong.text
    signed_out = TestClient(service.client.app, base_url="http://testserver")
    assert signed_out.post(PAGE, files=files, follow_redirects=False).status_code == 303


def test_in_a_browser_a_tested_image_shows_its_match(
    console_server: ConsoleServer, pages: Pages, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    key = {"Authorization": f"Bearer {console_server.api_key('kcsc', 'admin')}"}
    hashed = httpx.post(
        f"{console_server.url}/v1/hash",
        files={"file": ("photo.jpg", photo(), "image/jpeg")},
        headers=key,
    ).json()
    lists = f"{console_server.url}/v1/lists"
    assert httpx.post(lists, json={"name": "ncii-kr", "category": "ncii"}, headers=key).is_success
    entry = {"algorithm": "pdq", "hash": hashed["hashes"]["pdq"]["value"], "reference": "case-7"}
    added = httpx.post(f"{lists}/ncii-kr/entries", json={"entries": [entry]}, headers=key)
    assert added.status_code == 200, added.text
    console_server.create_user("vera", "kcsc", "viewer", password=PASSWORD)
    page = pages()
    page.goto(f"{console_server.url}/console/login")
    page.get_by_label("Login", exact=True).fill("vera")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.goto(f"{console_server.url}{PAGE}")
    check_accessibility(page, "test-image-form")
    flipped = tmp_path / "flipped.jpg"
    flipped.write_bytes(photo(flipped=True))
    deadline = time.monotonic() + 30
    while True:  # the replica follows the change log: the entry is matchable shortly
        page.get_by_label("Image", exact=True).set_input_files(flipped)
        with page.expect_navigation():
            page.get_by_role("button", name="Test", exact=True).click()
        if page.locator("#test-matches").count() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(page.locator("#verdict")).to_contain_text("This image matches 1 entry.")
    expect(page.locator("#test-matches")).to_contain_text("Flipped horizontally")
    expect(page.locator("#test-matches")).to_contain_text("case-7")
    screenshot(page, request.node.name, "match")
    check_accessibility(page, "test-image-result")
