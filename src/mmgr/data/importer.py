"""`data` stage: read a source with its format reader, clean it, save it into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgr.config import Config, DataConfig
from mmgr.data.dataset import Dataset
from mmgr.data.formats import READERS
from mmgr.data.splits import leave_one_out
from mmgr.errors import ConfigError, DataError
from mmgr.rundir import RunDir

RAW_FOLDER = "raw"


def read_dataset(cfg: DataConfig, workdir: Path) -> Dataset:
    """Read and clean the configured source (the synthetic world is generated into `workdir/raw`)."""
    if cfg.format == "synthetic":
        from mmgr.data.synthetic import generate_world

        source = workdir / RAW_FOLDER
        generate_world(source, cfg.synthetic)
        builder = READERS.get("generic")(source, None, None)
        builder.name = "synthetic"
    else:
        if not cfg.path:
            raise ConfigError(f"data.path is required for format {cfg.format!r}")
        source = Path(cfg.path)
        if not source.exists():
            raise DataError("not found", source)
        builder = READERS.get(cfg.format)(source, _optional(cfg.items), _optional(cfg.images))
    return builder.build(kcore=cfg.kcore, dedup=cfg.dedup)


def import_into_run(config: Config, out: Path, dataset: Dataset | None = None
                    ) -> tuple[RunDir, Dataset, dict[str, Any]]:
    """Create the run directory, import the data, write tables + manifest; returns the recorded summary. A given
    `dataset` (read from `config.data` and then changed, e.g. items held out by benchmarks/cold_start.py) is saved
    in place of reading the source again."""
    if dataset is None:
        dataset = read_dataset(config.data, Path(out))  # fails before anything of the run is written
    files = dataset.save(Path(out))
    split = leave_one_out(dataset.item_sequences(), config.split.max_history)
    summary = {"name": dataset.name, "format": config.data.format, "source": config.data.path,
               "fingerprint": dataset.fingerprint(), "stats": dataset.stats(), "problems": dataset.problems,
               "files": files}
    split_info = {"protocol": config.split.protocol, "max_history": config.split.max_history,
                  "targets": {"valid": "second-to-last item", "test": "last item"}, **split.summary()}
    run = RunDir.create(out, config)
    run.record("data", {"files": files}, dataset=summary, split=split_info)
    return run, dataset, summary


def _optional(value: str | None) -> Path | None:
    return Path(value) if value else None
