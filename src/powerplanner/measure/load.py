"""Drive an OpenAI-compatible endpoint (Dynamo's frontend, vLLM) at a fixed ISL, OSL and concurrency, streamed.

Why streaming: TTFT is the time to the first streamed token and ITL the mean gap between the later ones, as the
Dynamo frontend's histograms count them. The prompt is ``isl_tokens`` repetitions of one short word (about one
token each with common tokenizers; the server's ``usage.prompt_tokens`` says what it really was), and
``ignore_eos`` with ``min_tokens`` (vLLM's and Dynamo's extensions) asks for exactly ``osl_tokens`` tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx

from powerplanner.errors import MeasureError


@dataclass(frozen=True)
class LoadSpec:
    """The fixed load one cap is measured under."""

    endpoint: str  # base URL, e.g. http://frontend:8000
    model: str
    isl_tokens: int
    osl_tokens: int
    concurrency: int
    requests: int
    chat: bool = False
    timeout_s: float = 120.0


@dataclass(frozen=True)
class LoadResult:
    """Means over the completed requests; ``duration_s`` spans the first send to the last token, ``busy_s`` the
    time at least one request was in flight (the GPU idles in the gaps a closed loop leaves between requests)."""

    requests: int
    ttft_s: float
    itl_s: float
    output_tokens: int
    duration_s: float
    busy_s: float

    @property
    def throughput_tokens_per_s(self) -> float:
        return self.output_tokens / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class _One:
    start_s: float  # on the monotonic clock
    ttft_s: float
    token_times_s: tuple[float, ...]  # since start_s

    @property
    def end_s(self) -> float:
        return self.start_s + self.token_times_s[-1]


def busy_s(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``(start, end)`` intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _body(spec: LoadSpec) -> dict[str, object]:
    prompt = " ".join(["hello"] * spec.isl_tokens)
    common: dict[str, object] = {"model": spec.model, "max_tokens": spec.osl_tokens, "min_tokens": spec.osl_tokens,
                                 "ignore_eos": True, "stream": True, "temperature": 0.0}
    if spec.chat:
        return {**common, "messages": [{"role": "user", "content": prompt}]}
    return {**common, "prompt": prompt}


def _text_of(chunk: dict[str, object]) -> str:
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


async def _request(client: httpx.AsyncClient, spec: LoadSpec) -> _One:
    path = "/v1/chat/completions" if spec.chat else "/v1/completions"
    start = time.monotonic()
    times: list[float] = []
    async with client.stream("POST", spec.endpoint.rstrip("/") + path, json=_body(spec)) as response:
        if response.status_code != 200:
            body = (await response.aread()).decode("utf-8", "replace")[:200]
            raise MeasureError(f"{spec.endpoint}{path} answered {response.status_code}: {body!r}; check --endpoint "
                               "and --model")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            if _text_of(json.loads(data)):
                times.append(time.monotonic() - start)
    if not times:
        raise MeasureError(f"{spec.endpoint}{path} streamed no tokens; check that the server streams (stream=true)")
    return _One(start, times[0], tuple(times))


async def drive(spec: LoadSpec) -> LoadResult:
    """``spec.requests`` requests, ``spec.concurrency`` at a time (a closed loop: the next starts as one ends)."""
    queue = list(range(spec.requests))
    done: list[_One] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            done.append(await _request(client, spec))

    start = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=spec.timeout_s) as client:
            await asyncio.gather(*(worker(client) for _ in range(min(spec.concurrency, spec.requests))))
    except httpx.HTTPError as exc:
        raise MeasureError(f"{spec.endpoint}: {type(exc).__name__}: {exc}; check that the endpoint is up") from None
    duration = time.monotonic() - start
    gaps = [b - a for one in done for a, b in zip(one.token_times_s, one.token_times_s[1:], strict=False)]
    tokens = sum(len(one.token_times_s) for one in done)
    return LoadResult(len(done), sum(o.ttft_s for o in done) / len(done), sum(gaps) / len(gaps) if gaps else 0.0,
                      tokens, duration, busy_s([(o.start_s, o.end_s) for o in done]))


def first_model(endpoint: str, timeout_s: float) -> str:
    """The first model ``GET /v1/models`` lists: a health check that also names the model to ask for."""
    url = endpoint.rstrip("/") + "/v1/models"
    try:
        response = httpx.get(url, timeout=timeout_s)
        response.raise_for_status()
        models = response.json().get("data") or []
        return str(models[0]["id"])
    except httpx.HTTPError as exc:
        raise MeasureError(f"{url}: {type(exc).__name__}: {exc}; check --endpoint (the frontend's base URL)") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise MeasureError(f"{url} lists no model; give --model or check that the server has loaded one") from None
