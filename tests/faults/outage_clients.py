"""``python -m tests.faults.outage_clients URL KEY SECONDS OUT``: the clients of the
PostgreSQL-outage test, as a process of their own (maxim-py allows one ``Maxim`` per
process, and the end-to-end suite may hold it in the test process).

For ``SECONDS`` it sends, round after round, through the gateway at ``URL``: the official
humanloop SDK (``prompts.log`` with the Prompt's details, ``prompts.log`` by path alone,
whose version only PostgreSQL knows, and ``prompts.update_log``), Humanloop's older
``POST /logs`` with a reference id (by path alone too) and its update by that reference id
(``PATCH /logs?reference_id=``; the SDK has no method for it), the native batch
(``POST /v1/events``), and the official maxim-py Logger (a trace, a span, a generation and
its result; in every other round the result is pushed before its generation, so the
gateway must hold it). Retries are off: every call is answered once. It writes what it
sent, and every failure, as JSON to ``OUT``.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from humanloop import Humanloop
from maxim import Maxim

PROMPT = {"model": "gpt-4o", "provider": "openai", "temperature": 0.2,
          "template": [{"role": "system", "content": "Answer briefly."}]}  # fmt: skip
PATH = "outage/answer"
NO_RETRY = {"max_retries": 0, "timeout_in_seconds": 30}


def completion(prompt: int, output: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion",
        "created": int(time.time()), "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output,
                  "total_tokens": prompt + output},
    }  # fmt: skip


def main(url: str, key: str, seconds: float, out: Path) -> None:
    sent: dict[str, Any] = {"detailed": [], "by_path": [], "updated": {}, "sdk_updated": {},
                            "legacy": [], "native": [], "traces": [], "generations": {},
                            "held": [], "failures": [], "pushes": 0}  # fmt: skip
    http = httpx.Client(base_url=url, headers={"X-API-KEY": key}, timeout=30)
    humanloop = Humanloop(api_key=key, base_url=f"{url}/v5")
    maxim = Maxim({"api_key": key, "base_url": url})
    logger = maxim.logger({"id": "outage-bot", "auto_flush": False})
    api = logger.writer.maxim_api
    push = api.push_logs

    def recording(repository_id: str, logs: str) -> None:
        sent["pushes"] += 1
        try:
            push(repository_id, logs)
        except Exception as exc:
            sent["failures"].append(f"maxim push: {exc}")
            raise

    api.push_logs = recording

    def flush() -> None:
        logger.writer.flush(is_sync=True)

    def attempt(what: str, call: Any) -> Any:
        try:
            return call()
        except Exception as exc:
            cause = exc.__cause__  # the humanloop SDK wraps what its client raised
            sent["failures"].append(f"{what}: {type(exc).__name__}: {exc} ({cause!r})")
            return None

    def one_round(round_: int) -> None:
        run = f"r{round_}-{uuid.uuid4().hex[:6]}"
        tokens = 10 + round_
        logged = attempt("prompts.log", lambda: humanloop.prompts.log(
            path=PATH, prompt=PROMPT, messages=[{"role": "user", "content": run}],
            output="detailed", prompt_tokens=tokens, output_tokens=5, request_options=NO_RETRY,
        ))  # fmt: skip
        if logged is not None:
            sent["detailed"].append([logged.id, logged.version_id, tokens])
            done = attempt("prompts.update_log", lambda: humanloop.prompts.update_log(
                logged.prompt_id, logged.id, output_tokens=6, request_options=NO_RETRY,
            ))  # fmt: skip
            if done is not None:
                sent["sdk_updated"][logged.id] = 6
        by_path = attempt("prompts.log by path", lambda: humanloop.prompts.log(
            path=PATH, messages=[{"role": "user", "content": run}], output="by path",
            prompt_tokens=tokens, output_tokens=3, request_options=NO_RETRY,
        ))  # fmt: skip
        if by_path is not None:
            sent["by_path"].append([by_path.id, by_path.version_id])
        reference = f"{run}-ref"
        legacy = attempt("POST /logs", lambda: http.post("/logs", json={
            "project": PATH, "reference_id": reference, "output": "legacy",
            "messages": [{"role": "user", "content": run}], "prompt_tokens": tokens,
            "output_tokens": 1,
        }).raise_for_status())  # fmt: skip
        if legacy is not None:
            answer = legacy.json()
            sent["legacy"].append([answer["id"], answer["version_id"], reference])
        update = attempt("PATCH /logs", lambda: http.patch(
            "/logs", params={"reference_id": reference}, json={"output": f"updated {run}"},
        ).raise_for_status())  # fmt: skip
        if update is not None:
            sent["updated"][reference] = f"updated {run}"
        native_ids = [f"{run}-n{i}" for i in range(2)]
        native = attempt("POST /v1/events", lambda: http.post("/v1/events", json=[
            {"event_id": f"evt_{log_id}", "type": "log", "ts": "2026-12-02T12:00:00Z",
             "body": {"id": log_id, "path": "outage/native", "prompt_tokens": tokens,
                      "output_tokens": 2}} for log_id in native_ids
        ]).raise_for_status())  # fmt: skip
        if native is not None and native.status_code == 202:
            sent["native"] += native_ids
        trace_id = f"{run}-tr"
        trace = logger.trace({"id": trace_id, "name": "outage", "session_id": "outage"})
        span = trace.span({"id": f"{trace_id}-sp", "name": "plan"})
        generation_id = f"{trace_id}-g"
        if round_ % 2:  # the result first: its generation is unknown when it arrives
            flush()
            logger.generation_result(generation_id, completion(tokens, 4))
            flush()
            generation = span.generation({"id": generation_id, "provider": "openai",
                                          "model": "gpt-4o", "messages": []})  # fmt: skip
            sent["held"].append(generation_id)
        else:
            generation = span.generation({"id": generation_id, "provider": "openai",
                                          "model": "gpt-4o", "messages": []})  # fmt: skip
            generation.result(completion(tokens, 4))
        span.end()
        trace.end()
        flush()
        sent["traces"].append(trace_id)
        sent["generations"][generation_id] = tokens

    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        one_round(rounds)
        rounds += 1
        time.sleep(0.5)
    maxim.cleanup()
    sent["rounds"] = rounds
    out.write_bytes(orjson.dumps(sent))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]))
