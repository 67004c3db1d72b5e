"""Errors every layer may raise or catch."""

from __future__ import annotations

__all__ = ["ServiceError"]


class ServiceError(RuntimeError):
    """A local or external service could not be prepared, started, stopped or reached.

    The message is meant for a human and never contains a password.
    """
