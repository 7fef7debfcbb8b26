"""A fake OpenAI-compatible server (``/v1/models``, streamed ``/v1/completions`` and ``/v1/chat/completions``)
whose speed and draw follow the fake NVML's current power limit, as the whole-loop test's workers follow the
applied limits (tests/integration/e2e/cluster_sim.py).

The GPU behind it is stated as the cap model the planner uses (:class:`~powerplanner.model.capmodel.CapModel`):
the first token of a request comes after ``ttft_s x prefill.slowdown(cap)``, each later one ``itl_s x
decode.slowdown(cap)`` after the previous (on absolute deadlines, so a late wake-up never accumulates), and
while any request is in flight the GPU draws ``min(cap, natural_watts)``, else ``idle_watts``. A background
thread integrates that draw into the fake's energy counter (what ``nvmlDeviceGetTotalEnergyConsumption``
reads). ``on_request(n)`` runs before the n-th request (1-based) is served: a test injects faults there.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from powerplanner.model.capmodel import CapModel
from tests.fixtures.nvml import FakeNvml


@dataclass
class FakeGpuTruth:
    """The fake GPU's curves: what ``profile measure`` must recover."""

    prefill: CapModel
    decode: CapModel
    natural_watts: float
    idle_watts: float
    ttft_s: float = 0.1
    itl_s: float = 0.02


@dataclass
class FakeOpenAiServer:
    nvml: FakeNvml
    truth: FakeGpuTruth
    gpu_index: int = 0
    model: str = "fake-llm"
    on_request: Callable[[int], None] | None = None
    port: int = 0
    requests: int = 0
    _active: int = 0
    _cap_watts: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeOpenAiServer:
        self._cap_watts = self.nvml.read().gpus[self.gpu_index].limit_mw / 1000.0
        ready = threading.Event()
        self._threads = [threading.Thread(target=self._serve, args=(ready,), daemon=True),
                         threading.Thread(target=self._meter, daemon=True)]
        for thread in self._threads:
            thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(5)

    def _meter(self) -> None:
        """Every 5 ms: read the limit, add the draw since the last pass to the energy counter (millijoules)."""
        last = time.monotonic()
        carry_mj = 0.0
        while not self._stop.wait(0.005):
            now = time.monotonic()
            gpu = self.nvml.read().gpus[self.gpu_index]
            cap = gpu.limit_mw / 1000.0
            draw = min(self._cap_watts, self.truth.natural_watts) if self._active else self.truth.idle_watts
            carry_mj += draw * (now - last) * 1000.0
            whole = int(carry_mj)
            carry_mj -= whole
            self.nvml.update_gpu(self.gpu_index, energy_mj=gpu.energy_mj + whole)
            self._cap_watts, last = cap, now

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            method, path, _ = head.split(" ", 2)
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == "GET" and path == "/v1/models":
                data = json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(data), data))
            elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
                await self._stream(writer, body, chat=path.endswith("chat/completions"))
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (a test interrupts the sweep mid-request)
        finally:
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, body: dict[str, object], chat: bool) -> None:
        self.requests += 1
        if self.on_request is not None:
            self.on_request(self.requests)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        self._active += 1
        cap = self.nvml.read().gpus[self.gpu_index].limit_mw / 1000.0  # the limit now, not the meter's last
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.truth.ttft_s * self.truth.prefill.slowdown(cap)
            tokens = int(body.get("max_tokens", 16))  # type: ignore[call-overload]
            for i in range(tokens):
                await asyncio.sleep(max(0.0, deadline - loop.time()))
                piece = {"delta": {"content": f"t{i} "}} if chat else {"text": f"t{i} "}
                writer.write(f"data: {json.dumps({'choices': [{'index': 0, **piece}]})}\n\n".encode())
                await writer.drain()
                deadline += self.truth.itl_s * self.truth.decode.slowdown(cap)
            writer.write(b"data: [DONE]\n\n")
        finally:
            self._active -= 1
