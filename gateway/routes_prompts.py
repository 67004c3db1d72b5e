"""Humanloop's Prompt reads (``prompts.list``, ``prompts.get``, ``prompts.list_versions``)
over the Prompts and versions logflume derives from logs (``gateway.prompt_views``).
Served both at the root and under ``/v5``, as the other Humanloop routes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from producers.contract import FieldError

from .auth import Project
from .context import EnvironmentQuery, GatewayDep, IdPath, IdQuery, PageNumber, TextQuery
from .errors import JsonResponse, NotFound, ValidationFailed
from .prompt_views import PromptPage, PromptVersions, PromptView, prompt_views
from .store import ReadStore

__all__ = ["prompts_router"]

prompts_router = APIRouter(tags=["humanloop"])

PageSize = Annotated[int, Query(ge=1, le=500, description="Records per page.")]


def _store(gw: GatewayDep) -> ReadStore:
    if gw.store is None:
        raise NotFound("no read store")
    return gw.store


def unsupported(name: str, why: str) -> ValidationFailed:
    """422 for a request parameter logflume cannot honour (never silently ignored)."""
    return ValidationFailed([FieldError(f"query.{name}", f"is not supported: {why}")])


@prompts_router.get("/prompts", response_model=PromptPage, summary="List Prompts")
async def list_prompts(
    gw: GatewayDep,
    project: Project,
    page: PageNumber = 1,
    size: PageSize = 10,
    name: TextQuery = None,
    user_filter: TextQuery = None,
    sort_by: Literal["created_at", "updated_at", "name"] = "created_at",
    order: Literal["asc", "desc"] = "desc",
) -> JsonResponse:
    """Every Prompt that has a version, each shown at its newest version."""
    if user_filter is not None:
        raise unsupported("user_filter", "logflume does not record who edits a Prompt")
    store = _store(gw)
    size = min(size, gw.options.list_limit_max)
    prompts, total = await store.prompts_page(
        project, page=page, size=size, name=name, sort_by=sort_by, descending=order == "desc"
    )
    versions = await store.prompt_versions(project, [p["id"] for p in prompts])
    records = []
    for prompt in prompts:
        own = [v for v in versions if v["prompt_id"] == prompt["id"]]
        records.append(prompt_views(prompt, own)[-1])
    page_view = PromptPage(records=records, page=page, size=size, total=total)
    return JsonResponse(page_view.model_dump(mode="json"))


async def _versions(gw: GatewayDep, project: str, prompt_id: str) -> list[PromptView]:
    store = _store(gw)
    prompt = await store.prompt(project, prompt_id)
    versions = await store.prompt_versions(project, [prompt_id]) if prompt else []
    if prompt is None or not versions:
        raise NotFound(f"no prompt {prompt_id!r}")
    return prompt_views(prompt, versions)


@prompts_router.get(
    "/prompts/{id:path}/versions", response_model=PromptVersions, summary="A Prompt's versions"
)
async def list_versions(
    gw: GatewayDep,
    project: Project,
    id: IdPath,
    evaluator_aggregates: bool | None = None,
) -> JsonResponse:
    """Every version of the Prompt, oldest first."""
    if evaluator_aggregates:
        raise unsupported("evaluator_aggregates", "logflume has no evaluators")
    records = await _versions(gw, project, id)
    return JsonResponse(PromptVersions(records=records).model_dump(mode="json"))


@prompts_router.get("/prompts/{id:path}", response_model=PromptView, summary="A Prompt")
async def get_prompt(
    gw: GatewayDep,
    project: Project,
    id: IdPath,
    version_id: IdQuery = None,
    environment: EnvironmentQuery = None,
) -> JsonResponse:
    """The Prompt at ``version_id``; else its newest version (in ``environment`` when
    given: logflume has no deployments, a version belongs to the environment it was logged
    in)."""
    views = await _versions(gw, project, id)
    if version_id is not None:
        views = [v for v in views if v.version_id == version_id]
    elif environment is not None:
        views = [v for v in views if any(e["name"] == environment for e in v.environments)]
    if not views:
        raise NotFound(f"no version of prompt {id!r} matches")
    return JsonResponse(views[-1].model_dump(mode="json"))
