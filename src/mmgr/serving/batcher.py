"""Dynamic micro-batching: concurrent requests wait at most `max_wait_ms` to be decoded together in one beam search
(up to `max_batch` at a time); with batching off every request is decoded alone, in arrival order. `workers`
batches are decoded at once, each in its own thread (searches only read the model and the tries)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class BatchSettings:
    enabled: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0
    workers: int = 1


class MicroBatcher(Generic[In, Out]):
    """`await submit(x)` -> run([x, ...])[i]; `run` is called in worker threads, `settings.workers` batches at a
    time."""

    def __init__(self, run: Callable[[list[In]], list[Out]], settings: BatchSettings,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.run, self.settings, self.on_batch = run, settings, on_batch
        self._queue: asyncio.Queue[tuple[In, asyncio.Future]] | None = None
        self._workers: list[asyncio.Task] = []

    async def submit(self, item: In) -> Out:
        if self._queue is None:                          # created inside the server's event loop
            self._queue = asyncio.Queue()
            self._workers = [asyncio.create_task(self._serve()) for _ in range(max(1, self.settings.workers))]
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _serve(self) -> None:
        assert self._queue is not None
        limit = self.settings.max_batch if self.settings.enabled else 1
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.settings.max_wait_ms / 1000
            while len(batch) < limit:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            self.on_batch(len(batch))
            try:
                results: list[Any] = await asyncio.to_thread(self.run, [item for item, _ in batch])
            except Exception as exc:   # noqa: BLE001 - every waiting request gets the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
