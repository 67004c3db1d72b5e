"""Prompts and their versions as Humanloop's ``PromptResponse`` shows them, built from what
logflume derives from logs: a Prompt row per id (and path), a version per distinct prompt
content (its id the content hash), and each version's log count from the pipeline's
prompt-version rollups.

logflume has no deployments: where Humanloop answers a Prompt's deployed version, this
answers its newest version (in the environment asked for, when given). The kernel fields
a version row does not keep (``endpoint``, ``template_language``, ``attributes``, provider
extras) are stored with every log that used the version (``logs.prompt``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PromptPage", "PromptVersions", "PromptView", "prompt_views"]


class PromptView(BaseModel):
    """One version of a Prompt (Humanloop's ``PromptResponse``; unknown fields are null)."""

    model_config = ConfigDict(extra="allow")

    id: str
    path: str
    name: str
    type: Literal["prompt"] = "prompt"
    version_id: str
    model: str | None = None
    provider: str | None = None
    template: Any = None
    tools: list[Any] | None = None
    environments: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime
    version_logs_count: int = 0
    total_logs_count: int = 0
    inputs: list[dict[str, Any]] = Field(default_factory=list)


class PromptPage(BaseModel):
    """Humanloop's ``PaginatedDataPromptResponse``."""

    records: list[PromptView]
    page: int
    size: int
    total: int


class PromptVersions(BaseModel):
    """Humanloop's ``ListPrompts``: every version of one Prompt, oldest first."""

    records: list[PromptView]


def _log_count(version: dict[str, Any]) -> int:
    counts = version.get("log_counts") or {}
    return int(counts.get("log", 0))


def prompt_views(prompt: dict[str, Any], versions: list[dict[str, Any]]) -> list[PromptView]:
    """Each version of ``prompt`` (a ``prompts`` row) as a view, in the order given."""
    path = prompt.get("path") or prompt["id"]
    total = sum(_log_count(v) for v in versions)
    views = []
    for version in versions:
        parameters = version.get("parameters") or {}
        environment = version.get("environment")
        views.append(
            PromptView(
                **parameters,
                id=prompt["id"],
                path=path,
                name=path.rsplit("/", 1)[-1],
                version_id=version["id"],
                model=version.get("model"),
                provider=version.get("provider"),
                template=version.get("template"),
                tools=version.get("tools"),
                environments=[{"id": environment, "name": environment, "tag": "default"}]
                if environment
                else [],
                created_at=prompt["created_at"],
                updated_at=version["created_at"],
                last_used_at=version.get("last_used_at") or version["created_at"],
                version_logs_count=_log_count(version),
                total_logs_count=total,
            )
        )
    return views
