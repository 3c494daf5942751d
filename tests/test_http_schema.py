"""Schemathesis against the service's own ``/openapi.json``: requests generated from the
schema (valid ones, and invalid ones on purpose), through the real ASGI app, never a 500."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok

from hashmatch.api.app import create_app
from hashmatch.config import Settings
from hashmatch.store import Role, Store, database_url


def test_generated_requests_never_get_a_500(tmp_path: Path) -> None:
    app_settings = Settings(
        data_dir=tmp_path / "index",
        rate_limit=1e6,
        rate_burst=1_000_000,
        exchange_fetcher=False,  # generated peers are not to be fetched from
    )
    store = Store.open(database_url(app_settings.data_dir, None))
    _, secret = store.keys.create("org", frozenset(Role), actor="t")
    auth = {"Authorization": f"Bearer {secret}"}
    app = create_app(app_settings, load_in_background=False)
    statuses: Counter[int] = Counter()
    with TestClient(app) as client:  # runs the lifespan: store and matcher on app.state
        client.post("/v1/lists", json={"name": "l", "category": "csam"}, headers=auth)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operations.append(result.ok())
        assert len(operations) >= 10
        for operation in operations:
            for mode in GenerationMode:
                # Half the cases name the existing list, so that valid requests reach deep.
                names = {"name": "l"} if "{name}" in operation.path else None
                strategy = st.one_of(
                    operation.as_strategy(mode),
                    operation.as_strategy(mode, path_parameters=names),
                )

                @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def check(case: Case[Any]) -> None:
                    case.headers.update(auth)
                    if case.path == "/v1/exchange/feed" and isinstance(case.query, dict):
                        case.query["wait"] = 0  # long-polling is tested where it is waited for
                    response = case.call()
                    statuses[response.status_code] += 1
                    where = (case.method, case.formatted_path, response.text[:300])
                    assert response.status_code < 500, where
                    if response.status_code >= 400:
                        assert response.headers.get("content-type") == ["application/json"], where
                        assert set(response.json()) == {"error"}, where

                try:
                    check()
                except Unsatisfiable:
                    # Nothing can be made invalid in an operation without parameters.
                    assert mode is GenerationMode.NEGATIVE, operation.label
    store.close()
    # Not vacuous: generated requests were both accepted and refused.
    assert sum(n for code, n in statuses.items() if code < 300) >= 20, statuses
    assert sum(n for code, n in statuses.items() if 400 <= code < 500) >= 20, statuses
