"""The console's pages, one module per area; :data:`ROUTERS` in the order they are mounted."""

from __future__ import annotations

from fastapi import APIRouter

from hashmatch.console.pages import (
    audit,
    auth,
    exchanges,
    keys,
    lists,
    overview,
    people,
    testimage,
    uploads,
)

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    overview.router,
    lists.router,
    uploads.router,
    testimage.router,
    audit.router,
    keys.router,
    people.router,
    exchanges.router,
)
