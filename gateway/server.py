"""``uvicorn --factory gateway.server:app``: the gateway with settings from the environment
(what ``logflume gateway --workers N`` runs in each worker process)."""

from __future__ import annotations

from fastapi import FastAPI

from kernel.settings import Settings

from .app import create_app

__all__ = ["app"]


def app() -> FastAPI:
    settings = Settings()
    return create_app(settings, settings.gateway)
