"""A platform's withdrawal webhook: its organisation's admin registers the URL and receives the
signing secret, once; and sees how its notices fare."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from hashmatch.api.auth import Admin
from hashmatch.api.deps import StoreDep
from hashmatch.errors import NotFound
from hashmatch.store.webhooks import MAX_URL_CHARS

router = APIRouter(prefix="/v1", tags=["outcomes"])


class WebhookIn(BaseModel):
    url: str = Field(
        max_length=MAX_URL_CHARS,
        description="https:// endpoint; receives POSTs of entry.withdrawn notices",
        examples=["https://platform.example/hooks/hashmatch"],
    )


class WebhookOut(BaseModel):
    organisation: str
    url: str
    updated_at: str
    secret: str = Field(
        description="verifies X-Hashmatch-Signature (HMAC-SHA256 of the body); shown only now"
    )


@router.put("/webhooks", summary="Register this organisation's withdrawal webhook")
def set_webhook(body: WebhookIn, store: StoreDep, key: Admin) -> WebhookOut:
    """A new secret every time: the previous one stops verifying at once."""
    info, secret = store.webhooks.set(key.organisation, body.url, actor=key.actor)
    return WebhookOut(**info, secret=secret)


@router.get("/webhooks", summary="This organisation's webhook and its recent deliveries")
def get_webhook(
    store: StoreDep,
    key: Admin,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    found = store.webhooks.all(key.organisation)
    if not found:
        raise NotFound(f"no webhook registered for {key.organisation!r}")
    deliveries = store.webhooks.deliveries(key.organisation, status=status, limit=limit)
    return {**found[0], "recent": deliveries}
