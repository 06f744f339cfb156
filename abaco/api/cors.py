"""CORS as configured: which web origins may call the API from a browser.

``[api] cors_origins`` is a comma-separated list of origins (``https://portal.example``),
``"*"`` (the default, as Abaco, which applied flask-cors' defaults to every API) for any,
or ``""`` for none: then no CORS header is sent and browsers keep other origins out.
quart-cors (an ``after_request``, so error envelopes carry the headers too) answers with
``Access-Control-Allow-Origin``; a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) also gets ``Access-Control-Allow-Methods`` and
``-Headers`` (the headers the browser asked for). Preflights need no token: the app does
not authenticate ``OPTIONS`` requests, which Quart answers itself with no data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart_cors import cors

if TYPE_CHECKING:
    from quart import Quart

    from abaco.config import ApiSettings

__all__ = ["apply_cors", "origins"]


def origins(settings: ApiSettings) -> list[str]:
    """The configured origins; empty when CORS is off."""
    return [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]


def apply_cors(app: Quart, settings: ApiSettings) -> None:
    """Send CORS headers on ``app``'s responses for the configured origins (if any)."""
    allowed = origins(settings)
    if allowed:
        cors(app, allow_origin=allowed, allow_headers=["*"])
