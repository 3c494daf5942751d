"""A signal type registered from outside the package (here, the test suite) runs through the
whole service: list thresholds and their bound, imports, matching images and hashes over HTTP,
metrics, export and withdrawal, with no other module knowing its name."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Final

import imagehash
import numpy as np
from PIL import Image

from conftest import encode, natural_image
from hashmatch.hashsets.write import ExportWriter, Format
from hashmatch.signals import Hash, IndexKind, SignalType, Source, hash_bytes, registered
from hashmatch.store import Role
from services import running_service


class AverageHash(SignalType):
    """imagehash's 64-bit average hash: a toy, not a signal to rely on."""

    name = "ahash"
    bits = 64
    index_kind = IndexKind.HAMMING
    source = Source.PIXELS
    default_threshold = 3
    max_threshold = 6

    def hash_image(self, image: Image.Image) -> Hash:
        bits = np.asarray(imagehash.average_hash(image).hash, dtype=np.uint8)
        return Hash(self, np.packbits(bits).tobytes())


AHASH: Final = AverageHash()


def test_a_signal_type_from_outside_runs_through_the_service(tmp_path: Path) -> None:
    listed = encode(natural_image(640, 480, seed=31), "JPEG", quality=92)
    copy = encode(Image.open(io.BytesIO(listed)).resize((480, 360)), "PNG")
    with registered(AHASH), running_service("sqlite", tmp_path) as service:
        key = service.key("kcsc", Role.MATCH, Role.CONTRIBUTE)
        (value,) = hash_bytes(listed, [AHASH])
        over = service.post(
            "/v1/lists", key, json={"name": "x", "category": "ncii", "thresholds": {"ahash": 7}}
        )
        assert over.status_code == 422 and "thresholds.ahash" in over.text  # its own bound
        service.create_list(key, "toy", thresholds={"ahash": 4})
        assert service.store.lists.get("toy").thresholds["ahash"] == 4
        upload = service.post(
            "/v1/lists/toy/entries",
            key,
            content=f"algorithm,hash,reference\nahash,{value.hex},case-1\n".encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert upload.json()["added"] == 1, upload.text
        service.follow()

        image = service.post(
            "/v1/match", key, content=copy, headers={"Content-Type": "image/png"}
        ).json()
        found = [m for m in image["matches"] if m["algorithm"] == "ahash"]
        assert image["match"] and found and found[0]["reference"] == "case-1"
        assert image["hashes"]["ahash"]["value"] == hash_bytes(copy, [AHASH])[0].hex
        by_hash = {"hashes": [{"algorithm": "ahash", "value": value.hex}]}
        assert service.post("/v1/match/hashes", key, json=by_hash).json()["match"] is True
        metrics = service.client.get("/metrics").text
        assert 'hashmatch_index_entries{algorithm="ahash"} 1.0' in metrics

        exported = io.StringIO()
        writer = ExportWriter(exported, Format.TX)
        for entry in service.store.entries.listed("toy"):
            writer.write(entry)
        assert exported.getvalue() == f"ahash {value.hex} case-1\n"

        withdrawn = service.post(
            "/v1/lists/toy/withdrawals",
            key,
            json={"reason": "done", "hashes": [{"algorithm": "ahash", "value": value.hex}]},
        )
        assert withdrawn.json()["withdrawn"] == 1
        service.follow()
        assert service.post("/v1/match/hashes", key, json=by_hash).json()["match"] is False
