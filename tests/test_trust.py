"""Two organisations on one instance, each trying to harm the other, through the real app on
SQLite and PostgreSQL: neither can change what the other's matches say without its consent,
flood it, or rebuild its hash values through matching."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from conftest import encode, natural_image, random_hexes
from dbs import BACKENDS
from hashmatch.api.keycache import KEY_CACHE_SECONDS
from hashmatch.signals import MD5, PDQ, hash_bytes
from hashmatch.store import Role
from services import Service, distance, flip, flip_bit, running_service


@pytest.fixture(params=BACKENDS)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    with running_service(request.param, tmp_path) as running:
        yield running


def photo(seed: int = 1) -> bytes:
    return encode(natural_image(640, 480, seed=seed), "JPEG", quality=90)


def as_image(
    service: Service, key: dict[str, str], image: bytes, **params: object
) -> dict[str, Any]:
    response = service.post(
        "/v1/match",
        key,
        content=image,
        headers={**key, "Content-Type": "image/jpeg"},
        params=params,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_an_unaccepted_offer_changes_nothing_and_consent_is_explicit(service: Service) -> None:
    victim, victim_admin = (
        service.key("ncc", Role.MATCH, Role.CONTRIBUTE),
        service.key("ncc", Role.ADMIN),
    )
    evil = service.key("evil", Role.MATCH, Role.CONTRIBUTE)
    image = photo(2)
    pdq, md5 = hash_bytes(image, [PDQ, MD5])
    service.create_list(victim, "ncc-block")
    service.add(victim, "ncc-block", ("pdq", pdq.hex, "v1"), ("md5", md5.hex, "v1"))

    # The threshold of 128 that marked half of all random hashes is refused, naming the field.
    flood = {"name": "evil-flood", "category": "ncii", "shared_with": ["ncc"]}
    refused = service.post("/v1/lists", evil, json={**flood, "thresholds": {"pdq": 128}})
    assert refused.status_code == 422 and "thresholds.pdq" in refused.json()["error"]["message"]
    service.create_list(evil, "evil-flood", shared_with=["ncc"], thresholds={"pdq": 51})
    service.add(evil, "evil-flood", *[("pdq", h, None) for h in random_hexes(200, seed=3)])
    service.create_list(evil, "evil-allow", kind="allow", shared_with=["ncc"])
    service.add(evil, "evil-allow", ("pdq", pdq.hex, None))
    service.follow()

    before = as_image(service, victim, image)
    assert before["match"] is True and before["allowed"] == []
    assert all(not m["suppressed"] for m in before["matches"])
    probes = [{"algorithm": "pdq", "value": h} for h in random_hexes(1000, seed=4)]
    flooded = service.post("/v1/match/hashes", victim, json={"hashes": probes}).json()
    assert flooded["match"] is False  # evil's list is not in ncc's matches

    # ncc sees the offers, may not change them, and accepting without trust changes nothing.
    assert (
        service.client.patch(
            "/v1/lists/evil-allow", json={"enabled": False}, headers=victim
        ).status_code
        == 403
    )
    accepted = service.post("/v1/shares/evil-allow/accept", victim_admin)
    assert accepted.json() == {
        "list": "evil-allow",
        "owner": "evil",
        "kind": "allow",
        "category": "ncii",
        "state": "accepted",
        "trusted": False,
    }
    service.follow()
    untrusted = as_image(service, victim, image)
    assert untrusted["match"] is True
    assert [m["list"] for m in untrusted["allowed"]] == ["evil-allow"]  # seen, powerless
    assert all(not m["suppressed"] for m in untrusted["matches"])

    # Trusted, it suppresses ncc's perceptual hit, never its MD5 hit.
    trusted = service.post("/v1/shares/evil-allow/accept", victim_admin, json={"trust": True})
    assert trusted.json()["trusted"] is True
    service.follow()
    verdict = as_image(service, victim, image)
    by_algorithm = {m["algorithm"]: m for m in verdict["matches"]}
    assert (
        by_algorithm["pdq"]["suppressed"] and by_algorithm["pdq"]["suppressed_by"] == "evil-allow"
    )
    assert not by_algorithm["md5"]["suppressed"] and verdict["match"] is True
    # ... and leaving takes it out again.
    assert service.post("/v1/shares/evil-allow/leave", victim_admin).json()["state"] == "offered"
    service.follow()
    assert as_image(service, victim, image)["allowed"] == []

    audit = service.store.audit.log("evil-allow")
    answers = [(a["action"], a["details"]) for a in audit if a["action"].startswith("share.")]
    assert answers == [
        (
            "share.leave",
            {
                "old": {"accepted": True, "trusted": True},
                "new": {"accepted": False, "trusted": False},
            },
        ),
        (
            "share.accept",
            {
                "old": {"accepted": True, "trusted": False},
                "new": {"accepted": True, "trusted": True},
            },
        ),
        (
            "share.accept",
            {
                "old": {"accepted": False, "trusted": False},
                "new": {"accepted": True, "trusted": False},
            },
        ),
    ]


def test_own_allow_list_suppresses_perceptual_hits_only_and_every_path_agrees(
    service: Service,
) -> None:
    key = service.key("kcsc", Role.MATCH, Role.CONTRIBUTE)
    image = photo(5)
    pdq, md5 = hash_bytes(image, [PDQ, MD5])
    service.create_list(key, "block")
    service.add(key, "block", ("pdq", pdq.hex, "b1"), ("md5", md5.hex, "b2"))
    service.create_list(key, "known-good", kind="allow")
    service.add(key, "known-good", ("pdq", pdq.hex, "a1"))
    service.create_list(key, "pdq-only")
    other = photo(6)
    (other_pdq,) = hash_bytes(other, [PDQ])
    service.add(key, "pdq-only", ("pdq", other_pdq.hex, "c1"))
    service.create_list(key, "known-good-2", kind="allow")
    service.add(key, "known-good-2", ("pdq", other_pdq.hex, "a2"))
    service.follow()

    def summary(verdict: dict[str, Any]) -> tuple[bool, list[tuple[str, str, bool]], list[str]]:
        return (
            verdict["match"],
            sorted((m["list"], m["algorithm"], m["suppressed"]) for m in verdict["matches"]),
            sorted(m["list"] for m in verdict["allowed"]),
        )

    expected = {
        "image": (True, [("block", "md5", False), ("block", "pdq", True)], ["known-good"]),
        "other": (False, [("pdq-only", "pdq", True)], ["known-good-2"]),
    }
    via_image = {"image": as_image(service, key, image), "other": as_image(service, key, other)}
    assert {k: summary(v) for k, v in via_image.items()} == expected

    grouped = {
        "hashes": [
            {"algorithm": "pdq", "value": pdq.hex, "group": "image"},
            {"algorithm": "md5", "value": md5.hex, "group": "image"},
            {"algorithm": "pdq", "value": other_pdq.hex, "group": "other"},
        ]
    }
    results = service.post("/v1/match/hashes", key, json=grouped).json()["results"]
    via_hashes = {}
    for group in ("image", "other"):
        mine = [r for r in results if r["group"] == group]
        via_hashes[group] = {
            "match": mine[0]["match"],
            "matches": [m for r in mine for m in r["matches"]],
            "allowed": [m for r in mine for m in r["allowed"]],
        }
        assert len({r["match"] for r in mine}) == 1  # one verdict per item
    assert {k: summary(v) for k, v in via_hashes.items()} == expected

    folder = service.settings.data_dir.parent
    (folder / "image.jpg").write_bytes(image)
    (folder / "other.jpg").write_bytes(other)
    cli = service.cli(
        "match", str(folder / "image.jpg"), str(folder / "other.jpg"), "--org", "kcsc", "--json"
    )
    assert cli.returncode == 0, cli.stderr
    via_cli = {item["query"].rsplit("/", 1)[1][:-4]: item for item in json.loads(cli.stdout)}
    assert {k: summary(v) for k, v in via_cli.items()} == expected


def test_the_bit_flip_batch_rebuilds_nothing_for_another_organisation(service: Service) -> None:
    owner = service.key("kcsc", Role.MATCH, Role.CONTRIBUTE)
    owner_admin = service.key("kcsc", Role.ADMIN)
    partner = service.key("ncc", Role.MATCH)
    partner_admin = service.key("ncc", Role.ADMIN)
    listed = bytes.fromhex(random_hexes(1, seed=21)[0])
    service.share_one(owner, partner_admin, listed.hex())
    near = flip(listed, 10, seed=1)  # a near-duplicate the attacker holds
    batch = [near] + [flip_bit(near, i) for i in range(256)]
    body = {"hashes": [{"algorithm": "pdq", "value": q.hex()} for q in batch]}

    def rebuild(key: dict[str, str]) -> bytes | None:
        results = service.post("/v1/match/hashes", key, json=body).json()["results"]
        found = [r["matches"][0]["distance"] if r["matches"] else None for r in results]
        distances = [d for d in found if d is not None]
        if len(distances) < len(found):
            return None
        guess = bytearray(near)
        for i, d in enumerate(distances[1:]):
            if d < distances[0]:  # flipping bit i brought the query closer: it was wrong
                guess = bytearray(flip_bit(bytes(guess), i))
        return bytes(guess)

    assert rebuild(owner) == listed  # the attack works where distances are shown ...
    assert rebuild(partner) is None  # ... and gets no distance at all elsewhere
    results = service.post("/v1/match/hashes", partner, json=body).json()["results"]
    assert {(r["match"], r["matches"][0]["band"]) for r in results} == {(True, "near")}
    assert owner_admin  # the owner's other keys are untouched by any of this


def test_a_boundary_probe_suspends_the_key_before_it_learns_the_hash(service: Service) -> None:
    owner = service.key("kcsc", Role.CONTRIBUTE)
    partner, partner_admin = service.key("ncc", Role.MATCH), service.key("ncc", Role.ADMIN)
    second = service.key("ncc", Role.MATCH)
    listed = bytes.fromhex(random_hexes(1, seed=22)[0])
    service.share_one(owner, partner_admin, listed.hex())
    near = flip(listed, 12, seed=2)

    def ask(key: dict[str, str], query: bytes, max_distance: int) -> bool | None:
        body = {
            "hashes": [{"algorithm": "pdq", "value": query.hex()}],
            "max_distance": max_distance,
        }
        response = service.post("/v1/match/hashes", key, json=body)
        if response.status_code == 403:
            assert response.json()["error"]["code"] == "key_suspended"
            return None
        return bool(response.json()["match"])

    # Find the distance with max_distance, then stand on the edge and flip bit by bit.
    d = next(m for m in range(32) if ask(partner, near, m))
    assert d == 12
    learned: dict[int, bool] = {}
    for i in range(256):
        answer = ask(partner, flip_bit(near, i), d - 1)
        if answer is None:
            break
        learned[i] = answer  # True: bit i of the query disagreed with the listed hash
    else:
        pytest.fail("256 probes answered: the hash was rebuilt")
    assert len(learned) <= 64
    guess = near
    for i, disagreed in learned.items():
        if disagreed:
            guess = flip_bit(guess, i)
    assert distance(guess, listed) > 0  # not rebuilt
    # The organisation's other key is stopped at its first probe; the owner sees why.
    assert ask(second, flip_bit(near, 200), d - 1) is None
    assert service.client.get("/v1/lists", headers=partner).json()["error"]["code"] == (
        "key_suspended"
    )
    audit = service.store.audit.log("ncii-kr")
    assert [a["action"] for a in audit[:2]] == ["list.probed", "list.probed"]
    assert "ncc" in audit[0]["reason"]
    # The operator lifts it, with a reason.
    suspended = [k for k in json.loads(service.cli("keys", "ls").stdout) if k["suspended_at"]]
    assert len(suspended) == 2
    key_id = suspended[0]["id"]  # the partner's first key (the keys are listed by id)
    lifted = service.cli("keys", "reinstate", str(key_id), "--reason", "reviewed with ncc")
    assert lifted.returncode == 0, lifted.stderr
    assert json.loads(lifted.stdout)["suspended_at"] is None
    # Once the key cache catches up, the reinstated key works, and this replica has forgotten
    # the probe it reviewed: a near query is answered, not suspended again at once.
    time.sleep(KEY_CACHE_SECONDS + 0.2)
    assert ask(partner, flip_bit(near, 201), d - 1) is not None
    assert ask(second, flip_bit(near, 202), d - 1) is None  # still suspended


def test_admin_keys_and_names_stay_within_their_organisation(service: Service) -> None:
    kcsc = service.key("kcsc", Role.CONTRIBUTE)
    evil_admin = service.key("evil", Role.ADMIN)
    service.create_list(kcsc, "ncii-kr")
    assert service.client.get("/v1/lists", headers=evil_admin).json() == []
    for method, path, body in (
        ("GET", "/v1/lists/ncii-kr", None),
        ("PATCH", "/v1/lists/ncii-kr", {"enabled": False}),
        ("POST", "/v1/lists/ncii-kr/withdrawals", {"reason": "x", "references": ["r"]}),
        ("GET", "/v1/lists/ncii-kr/entries", None),
        ("POST", "/v1/shares/ncii-kr/accept", None),
    ):
        response = service.client.request(method, path, json=body, headers=evil_admin)
        assert response.status_code == 404, (method, path, response.text)
    # Organisation names are identifiers: case-folded, no look-alikes, spaces or wildcards.
    upper = service.post(
        "/v1/lists", kcsc, json={"name": "a", "category": "ncii", "shared_with": ["NCC"]}
    )
    assert upper.json()["shared_with"] == ["ncc"]
    for bad in ("nсс", "ncc tw", "*", "", "-ncc", "n" * 65, "ncc\x00"):
        response = service.post(
            "/v1/lists", kcsc, json={"name": "b", "category": "ncii", "shared_with": [bad]}
        )
        assert response.status_code == 422, bad
        assert "shared_with[0]" in response.json()["error"]["message"], bad


def test_list_filters_fail_closed_and_honour_every_name(service: Service) -> None:
    kcsc = service.key("kcsc", Role.MATCH, Role.CONTRIBUTE)
    ncc = service.key("ncc", Role.MATCH, Role.CONTRIBUTE)
    values = random_hexes(3, seed=30)
    for name, value in zip(("a", "b"), values, strict=False):
        service.create_list(kcsc, name)
        service.add(kcsc, name, ("pdq", value, name))
    service.create_list(ncc, "theirs")
    service.create_list(ncc, "offered", shared_with=["kcsc"])
    service.follow()
    image = photo(9)
    body = {"hashes": [{"algorithm": "pdq", "value": v} for v in values[:2]]}

    def listed(response: object) -> set[str]:
        return {m["list"] for r in response.json()["results"] for m in r["matches"]}  # type: ignore[attr-defined]

    assert listed(service.post("/v1/match/hashes", kcsc, json={**body, "lists": ["a", "b"]})) == {
        "a",
        "b",
    }
    assert listed(service.post("/v1/match/hashes", kcsc, json={**body, "lists": ["b"]})) == {"b"}
    for names, status in (
        (["nope"], 404),
        (["theirs"], 404),
        (["offered"], 422),
        (["a", "nope"], 404),
    ):
        response = service.post("/v1/match/hashes", kcsc, json={**body, "lists": names})
        assert response.status_code == status, names
    # The same for images, with repeated and comma-separated parameters.
    for params in ({"lists": "nope"}, {"lists": ["a", "nope"]}, {"lists": "a,nope"}):
        assert as_image_status(service, kcsc, image, params) == 404, params
    assert as_image_status(service, kcsc, image, {"lists": ["a", "b"]}) == 200
    (image_pdq,) = hash_bytes(image, [PDQ])
    service.add(kcsc, "b", ("pdq", image_pdq.hex, "image"))
    service.follow()
    for params in ({"lists": ["b", "a"]}, {"lists": ["a", "b"]}, {"lists": "a,b"}):
        assert as_image(service, kcsc, image, **params)["match"] is True, params  # every name
    assert as_image(service, kcsc, image, lists="a")["match"] is False
    missing = service.cli("match", "--hash", f"pdq:{values[0]}", "--lists", "nope")
    assert missing.returncode == 66 and b"nope" in missing.stderr


def as_image_status(
    service: Service, key: dict[str, str], image: bytes, params: dict[str, Any]
) -> int:
    response = service.client.post(
        "/v1/match", content=image, params=params, headers={**key, "Content-Type": "image/jpeg"}
    )
    return int(response.status_code)


def test_thresholds_are_bounded_and_a_lowered_bound_applies_to_old_lists(tmp_path: Path) -> None:
    listed = bytes.fromhex(random_hexes(1, seed=40)[0])
    with running_service("sqlite", tmp_path) as service:
        key = service.key("kcsc", Role.MATCH, Role.CONTRIBUTE)
        too_far = service.post(
            "/v1/lists", key, json={"name": "x", "category": "ncii", "thresholds": {"pdq": 52}}
        )
        assert too_far.status_code == 422
        service.create_list(key, "wide", thresholds={"pdq": 51})
        service.add(key, "wide", ("pdq", listed.hex(), None))
        service.follow()
        query = {"hashes": [{"algorithm": "pdq", "value": flip(listed, 45).hex()}]}
        assert service.post("/v1/match/hashes", key, json=query).json()["match"] is True
    with running_service("sqlite", tmp_path, max_thresholds=(("pdq", 40),)) as service:
        # The operator lowered the bound: the old list is matched at 40 now.
        key = service.key("kcsc", Role.MATCH)
        assert service.post("/v1/match/hashes", key, json=query).json()["match"] is False


def test_reuploads_of_a_weak_copy_are_not_mistaken_for_a_probe(tmp_path: Path) -> None:
    """Many re-encodes of copies that match only near the threshold (a slightly turned photo)
    vary a few unstable bits, not the dozens a probe must: the guard stays quiet."""
    bridge = Path(__file__).parent / "data" / "pdq-conformance" / "dih" / "bridge-1-original.jpg"
    source = Image.open(bridge).convert("RGB")
    (listed,) = hash_bytes(encode(source, "JPEG", quality=95), [PDQ])
    with running_service("sqlite", tmp_path, max_upload_bytes=5_000_000) as service:
        owner = service.key("kcsc", Role.CONTRIBUTE)
        platform, platform_admin = service.key("ncc", Role.MATCH), service.key("ncc", Role.ADMIN)
        service.share_one(owner, platform_admin, listed.hex)
        matched = 0
        for angle in (1.1, 1.2, 1.3, 1.4, 1.5):
            turned = source.rotate(angle, resample=Image.Resampling.BICUBIC)
            for quality, scale in itertools.product((40, 60, 75, 90), (1.0, 0.7, 0.5)):
                size = (int(turned.width * scale), int(turned.height * scale))
                upload = encode(turned.resize(size), "JPEG", quality=quality)
                verdict = as_image(service, platform, upload)  # asserts 200: never suspended
                matched += verdict["match"]
        guard = service.services.probes
        state = guard._states["ncc"]
        varied = max(v.mask.bit_count() for v in state.varied.values())
        assert matched >= 30 and state.anchors  # near-threshold matches, anchored
        assert 0 < varied < guard.rules.budget(PDQ) // 2


def test_the_operator_offers_and_answers_from_the_cli(service: Service) -> None:
    kcsc = service.key("kcsc", Role.CONTRIBUTE)
    service.create_list(kcsc, "known-good", kind="allow")
    assert service.cli("lists", "share", "known-good", "NCC", "kcsc-test").returncode == 0
    assert service.store.lists.get("known-good").shared_with == ("kcsc-test", "ncc")
    offered = json.loads(service.cli("shares", "ls", "--org", "ncc").stdout)
    assert [(o["list"], o["state"]) for o in offered] == [("known-good", "offered")]
    trusted = service.cli("shares", "accept", "known-good", "--org", "ncc", "--trust")
    assert trusted.returncode == 0, trusted.stderr
    info = service.store.lists.get("known-good")
    assert info.accepted_by == ("ncc",) and info.trusted_by == ("ncc",)
    assert service.cli("shares", "leave", "known-good", "--org", "ncc").returncode == 0
    assert service.store.lists.get("known-good").accepted_by == ()
    assert service.cli("shares", "accept", "known-good", "--org", "evil").returncode == 66
    assert service.cli("lists", "unshare", "known-good", "ncc").returncode == 0
    assert service.store.lists.get("known-good").shared_with == ("kcsc-test",)
    update = next(a for a in service.store.audit.log("known-good") if a["action"] == "list.update")
    assert update["details"] == {
        "old": {"shared_with": ["kcsc-test", "ncc"]},
        "new": {"shared_with": ["kcsc-test"]},
    }
