"""The AI feature has no endpoints of its own (scripts use it through ``ai``);
it tells the magic-comments schema the defaults ``@ai-*`` fall back to."""

from __future__ import annotations

from typing import Any

from hoodyexec.http.context import Context
from hoodyexec.http.endpoint import FalconApp

from .helper import AISettings


def defaults(settings: AISettings) -> dict[str, Any]:
    """What each ``@ai-*`` magic comment defaults to on this kit."""
    return {
        "ai-model": settings.model,
        "ai-temperature": None,  # the provider's own default
        "ai-max-tokens": None,  # the provider's own default
        "ai-key": "the kit's ai-api-key" if settings.api_key else "OPENAI_API_KEY or a kit tag",
    }


def register(app: FalconApp, ctx: Context) -> None:
    s = ctx.settings
    settings = AISettings(
        base_url=s.ai_base_url if s else None,
        api_key=s.ai_api_key if s else None,
        model=s.ai_model if s else None,
    )
    ctx.facts["magic-defaults"] = lambda: defaults(settings)
