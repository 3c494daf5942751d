"""What a route may depend on, typed: one :class:`Services` per app, and dependencies that
hand out its parts (the store, the live match state, the settings), refusing with 503 while
the service is still starting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request

from hashmatch.api.keycache import KeyCache
from hashmatch.api.metrics import Metrics
from hashmatch.api.ratelimit import TokenBuckets
from hashmatch.config import Settings
from hashmatch.errors import NotReady
from hashmatch.matching.counts import MatchRecorder
from hashmatch.matching.follower import Follower
from hashmatch.matching.probes import ProbeGuard
from hashmatch.matching.state import MatchState
from hashmatch.media import DecodeBudget
from hashmatch.store import Store


@dataclass
class Services:
    """Everything one app (one worker process) holds. The first group exists from the app's
    creation; the second once its lifespan has opened the store, and ``ready`` once the
    replica is loaded and following the change log."""

    settings: Settings
    rate_limits: TokenBuckets
    probes: ProbeGuard
    decoders: anyio.CapacityLimiter
    decode_budget: DecodeBudget
    video_decoders: anyio.CapacityLimiter
    metrics: Metrics
    store: Store | None = None
    follower: Follower | None = None
    keys: KeyCache | None = None
    recorder: MatchRecorder | None = None  # match ids and counts (api.outcomes.Background)
    ready: bool = field(default=False)


def services_of(app: Any) -> Services:
    found: Services = app.state.services
    return found


async def _services(request: Request) -> Services:
    return services_of(request.app)


async def _store(services: Annotated[Services, Depends(_services)]) -> Store:
    if services.store is None:
        raise NotReady("the service is starting")
    return services.store


async def _state(services: Annotated[Services, Depends(_services)]) -> MatchState:
    if services.follower is None or not services.ready:
        raise NotReady("the index is still loading")
    return services.follower.state


async def _settings(services: Annotated[Services, Depends(_services)]) -> Settings:
    return services.settings


ServicesDep = Annotated[Services, Depends(_services)]
StoreDep = Annotated[Store, Depends(_store)]
StateDep = Annotated[MatchState, Depends(_state)]
SettingsDep = Annotated[Settings, Depends(_settings)]
