"""Property-based requests against every route of the OpenAPI document: never a 500."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashmatch.api.app import create_app
from hashmatch.config import Settings
from hashmatch.store import Role, Store, database_url

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def test_no_request_gets_a_500(tmp_path: Path) -> None:
    app_settings = Settings(data_dir=tmp_path / "index", rate_limit=1e6, rate_burst=1_000_000)
    store = Store.open(database_url(app_settings.data_dir, None))
    _, secret = store.keys.create("org", frozenset(Role), actor="t")
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(app_settings, load_in_background=False)) as client:
        client.post("/v1/lists", json={"name": "l", "category": "csam"}, headers=auth)
        spec = client.get("/openapi.json").json()
        routes = [
            (path.replace("{name}", "l"), method.upper())
            for path, operations in spec["paths"].items()
            for method in operations
        ]
        assert len(routes) >= 10

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            route=st.sampled_from(routes),
            body=JSON,
            raw=st.binary(max_size=300),
            as_json=st.booleans(),
            query=st.dictionaries(
                st.sampled_from(["cursor", "limit", "after", "lists", "max_distance", "strict"]),
                st.text(max_size=8),
                max_size=3,
            ),
            with_key=st.booleans(),
        )
        def check(
            route: tuple[str, str],
            body: object,
            raw: bytes,
            as_json: bool,
            query: dict[str, str],
            with_key: bool,
        ) -> None:
            path, method = route
            headers = dict(auth) if with_key else {}
            if as_json:
                content = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            else:
                content = raw
                headers["Content-Type"] = "image/jpeg"
            response = client.request(method, path, content=content, headers=headers, params=query)
            assert response.status_code < 500, (method, path, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}

        check()
    store.close()
