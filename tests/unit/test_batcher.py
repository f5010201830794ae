"""The micro-batcher decodes `workers` batches at once, and the readers-writer lock lets searches share the model
while onboarding waits for them and runs alone."""

from __future__ import annotations

import asyncio
import threading
import time

from mmgr.serving.batcher import BatchSettings, MicroBatcher
from mmgr.serving.rwlock import ReadWriteLock


def test_two_workers_decode_two_batches_at_once():
    meet = threading.Barrier(2, timeout=5)                # passes only when two batches are in `run` together

    def run(batch: list[int]) -> list[int]:
        meet.wait()
        return [x * 10 for x in batch]

    async def main() -> list[int]:
        batcher = MicroBatcher(run, BatchSettings(enabled=False, workers=2))
        return list(await asyncio.gather(batcher.submit(1), batcher.submit(2)))

    assert asyncio.run(main()) == [10, 20]


def test_one_worker_decodes_one_batch_at_a_time():
    running, most = [0], [0]
    lock = threading.Lock()

    def run(batch: list[int]) -> list[int]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return batch

    async def main() -> list[int]:
        batcher = MicroBatcher(run, BatchSettings(enabled=False))
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(4))))

    assert asyncio.run(main()) == [0, 1, 2, 3] and most[0] == 1


def test_readers_share_and_a_writer_runs_alone():
    lock, events = ReadWriteLock(), []
    both_reading = threading.Barrier(2, timeout=5)

    def reader(name: str) -> None:
        with lock.reading():
            both_reading.wait()                           # two readers inside at once
            events.append(f"{name} read")
            time.sleep(0.05)

    def writer() -> None:
        with lock.writing():
            events.append("write")

    readers = [threading.Thread(target=reader, args=(n,)) for n in ("a", "b")]
    for thread in readers:
        thread.start()
    time.sleep(0.01)
    write = threading.Thread(target=writer)
    write.start()
    for thread in (*readers, write):
        thread.join(5)
    assert sorted(events[:2]) == ["a read", "b read"] and events[2] == "write"   # the writer waited for both


def test_a_waiting_writer_goes_before_later_readers():
    lock, events = ReadWriteLock(), []
    entered = threading.Event()

    def first_reader() -> None:
        with lock.reading():
            entered.set()
            time.sleep(0.1)
            events.append("first read")

    def writer() -> None:
        with lock.writing():
            events.append("write")

    def late_reader() -> None:
        with lock.reading():
            events.append("late read")

    threads = [threading.Thread(target=first_reader)]
    threads[0].start()
    entered.wait(5)
    threads.append(threading.Thread(target=writer))
    threads[1].start()
    time.sleep(0.02)                                      # the writer is waiting
    threads.append(threading.Thread(target=late_reader))
    threads[2].start()
    for thread in threads:
        thread.join(5)
    assert events == ["first read", "write", "late read"]
