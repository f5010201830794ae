"""One progress display for every long step: a bar (description, count, rate, ETA) on a terminal; where stderr is
not a terminal (a log file, a CI job, `nohup`), plain lines on the `mmgr` logger at most every `PLAIN_EVERY`
seconds, and one when the work ends."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

PLAIN_EVERY = 60.0
log = logging.getLogger("mmgr")


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield `advance(n, total=None)` (a new total when the work's size is learnt on the way); shows progress when
    enabled and there is work to show."""
    if not enabled or total == 0:
        yield lambda n, total=None: None
        return
    if not Console(stderr=True).is_terminal:
        with plain_progress(description, total) as advance:
            yield advance
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int, total: int | None = None) -> None:
            bar.advance(task, n)
            if total is not None:
                bar.update(task, total=total)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.1f}/s" if speed else "")

        yield advance


@contextlib.contextmanager
def plain_progress(description: str, total: int, every: float = PLAIN_EVERY,
                   clock: Callable[[], float] = time.monotonic) -> Iterator[Callable[..., None]]:
    """`advance` for a log: `description: done/total (share), rate/s, ~time left` every `every` seconds, and at
    the end."""
    started = last = clock()
    done, size = 0, total

    def line() -> str:
        elapsed = max(clock() - started, 1e-9)
        rate = done / elapsed
        left = f", ~{duration((size - done) / rate)} left" if rate > 0 and done < size else ""
        return f"{description}: {done:,}/{size:,} ({done / max(size, 1):.0%}), {rate:,.2f}/s{left}"

    def advance(n: int, total: int | None = None) -> None:
        nonlocal done, size, last
        done += n
        size = total if total is not None else size
        if clock() - last >= every:
            last = clock()
            log.info(line())

    yield advance
    log.info(line() + f" in {duration(clock() - started)}")


def duration(seconds: float) -> str:
    """`1h05m` or `4m09s`."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
