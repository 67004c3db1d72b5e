"""The ids logflume derives from what callers send: a File's id from its path and a
version's id from its details (Humanloop's prefixes: ``pr`` prompt, ``fl`` flow, ``tl``
tool, ``ev`` evaluator). Stage 1 stamps them on logs; the gateway answers with them before
the pipeline has run; both must agree, so they live in the contract."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

__all__ = ["file_id_for_path", "file_version_id", "prompt_id_for_path", "prompt_version_id"]


def prompt_version_id(prompt: dict[str, Any]) -> str:
    """Deterministic id of a prompt version: a hash of its content (model, template,
    parameters, tools), independent of key order."""
    digest = hashlib.sha256(orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"prv_{digest[:24]}"


# Paths repeat (a few per application) and a hash costs ~0.5 us a call against ~0.06 for a
# cache hit; stage 1 derives a File id per log it emits.
@functools.lru_cache(maxsize=4096)
def prompt_id_for_path(path: str) -> str:
    """A Prompt's id when the caller named it only by path: stable per path."""
    return f"pr_{hashlib.sha256(path.encode()).hexdigest()[:24]}"


# Humanloop's id prefixes of a File and of its versions, per log kind.
_FILE_PREFIX = {"prompt": "pr", "flow": "fl", "tool": "tl", "evaluator": "ev"}


@functools.lru_cache(maxsize=4096)
def file_id_for_path(kind: str | None, path: str) -> str:
    """The id of a log's File (a Prompt, Flow, Tool or Evaluator) named only by path:
    stable per path (a path names one File, whatever its kind)."""
    if kind in (None, "prompt"):
        return prompt_id_for_path(path)
    return f"{_FILE_PREFIX[kind]}_{hashlib.sha256(path.encode()).hexdigest()[:24]}"


def file_version_id(kind: str | None, details: dict[str, Any]) -> str:
    """The version of a File by the hash of its details (a prompt's: :func:`prompt_version_id`;
    a Flow's or Tool's kernel, an Evaluator's spec)."""
    if kind in (None, "prompt"):
        return prompt_version_id(details)
    digest = hashlib.sha256(orjson.dumps(details, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{_FILE_PREFIX[kind]}v_{digest[:24]}"
