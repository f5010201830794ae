"""`mmgr serve --processes N`: N server processes on one port (uvicorn's workers), each with its own model, batcher
and decoding workers, so that HTTP handling and decoding of one process never wait on another's interpreter lock.
Processes share nothing in memory; onboarded items reach every process through the run's store (`serving/store.py`,
as two servers on one run share them), and `/metrics` sums every process's values (prometheus_client's
multiprocess mode, in a temporary folder that lives as long as the server). The parent checks the run and sweeps
orphan images once, before the processes start, then hands each its settings in the environment.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI

from mmgr.serving.app import MULTIPROCESS_ENV, api_key_from_env, create_app
from mmgr.serving.batcher import BatchSettings
from mmgr.serving.bundle import load_recommender
from mmgr.serving.service import Limits, Recommender

SETTINGS_ENV = "MMGR_SERVE_SETTINGS"


@dataclass(frozen=True)
class ServerSettings:
    run: str
    max_k: int
    max_history: int
    onboarding: bool
    batching: bool
    max_batch: int
    max_wait_ms: float
    workers: int
    processes: int

    def export(self) -> None:
        """Hand these settings to the server processes (their environment)."""
        os.environ[SETTINGS_ENV] = json.dumps(asdict(self))


@contextmanager
def shared_metrics() -> Iterator[Path]:
    """A fresh folder for the server processes' metric values (set in the environment they inherit), removed after."""
    folder, before = Path(tempfile.mkdtemp(prefix="mmgr-metrics-")), os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            del os.environ[MULTIPROCESS_ENV]
        else:
            os.environ[MULTIPROCESS_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def share_threads(consumers: int) -> int:
    """Torch threads per decoding worker: the process's threads shared out among `consumers` (workers of every
    process), at least one each."""
    import torch

    threads = max(1, torch.get_num_threads() // consumers)
    torch.set_num_threads(threads)
    return threads


def app_of(settings: ServerSettings) -> tuple[Recommender, FastAPI]:
    recommender = load_recommender(Path(settings.run), Limits(settings.max_k, settings.max_history),
                                   settings.onboarding)
    batching = BatchSettings(settings.batching, settings.max_batch, settings.max_wait_ms, settings.workers)
    return recommender, create_app(recommender, batching, api_key=api_key_from_env())


def app_from_environment() -> FastAPI:
    """The app of one server process (uvicorn's factory), from the settings `ServerSettings.export` handed down."""
    settings = ServerSettings(**json.loads(os.environ[SETTINGS_ENV]))
    share_threads(settings.workers * settings.processes)
    return app_of(settings)[1]
