"""``uvicorn --factory gateway.server:app``: the gateway with settings from the environment
(what ``logflume gateway --workers N`` runs in each worker process)."""

from __future__ import annotations

from fastapi import FastAPI

from logflume.settings import Settings

from .app import create_app
from .settings import GatewaySettings

__all__ = ["app"]


def app() -> FastAPI:
    return create_app(Settings(), GatewaySettings())
