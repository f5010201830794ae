"""mmgr from Python: the same runner, ranker and checks as the command line, without a shell.

    import mmgr

    run = mmgr.run("quickstart", "runs/example", training__epochs=3)
    recommender = mmgr.load("runs/example")
    recommender.recommend(history=["i0001", "i0002"], k=5)

Recipes are YAML paths or names: a packaged recipe (`quickstart`) or a file in ./configs (`tiger` ->
configs/tiger.yaml). Overrides are keyword arguments whose `__` stands for the dot of a dotted key
(`training__epochs=3` is `training.epochs=3`). `load` gives the ranker `mmgr serve` answers with (one decoding path
for evaluation, serving and this API), with the server's request checks and item onboarding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgr.errors import MmgrError

PACKAGED = Path(__file__).resolve().parent / "recipes"


@dataclass(frozen=True)
class RunResult:
    """A finished `mmgr.run`: the run directory, its training summary and its evaluation (results.json)."""

    path: Path
    train: dict[str, Any]
    results: dict[str, Any]


def recipe_path(recipe: str | Path) -> Path:
    """A recipe file: a path, else a packaged recipe name, else configs/<name>.yaml under the working directory."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise MmgrError(f"recipe {path}: no such file")
        return path
    for candidate in (PACKAGED / f"{recipe}.yaml", Path("configs") / f"{recipe}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for folder in (PACKAGED, Path("configs")) for p in folder.glob("*.yaml")})
    raise MmgrError(f"recipe {recipe!r}: not a YAML file, a packaged recipe or configs/{recipe}.yaml (known: "
                    f"{', '.join(known)})")


def override_items(overrides: dict[str, Any]) -> list[str]:
    """Keyword overrides (`training__epochs=3`) as `key=value` settings (`training.epochs=3`); values as JSON."""
    return [f"{key.replace('__', '.')}={json.dumps(value) if not isinstance(value, str) else value}"
            for key, value in overrides.items()]


def config_of(recipes: str | Path | Sequence[str | Path], overrides: dict[str, Any]):
    from mmgr.config import load_config

    names = [recipes] if isinstance(recipes, str | Path) else list(recipes)
    return load_config([recipe_path(r) for r in names], override_items(overrides))


def run(recipes: str | Path | Sequence[str | Path], out: str | Path, progress: bool = False,
        **overrides: Any) -> RunResult:
    """Import, encode, tokenize, train and evaluate one recipe in run directory `out` (`mmgr run`); finished
    stages with the same settings are reused."""
    from mmgr.pipeline import run_recipe
    from mmgr.rundir import RunDir

    config = config_of(recipes, overrides)
    with RunDir(Path(out)).writing("run"):
        done = run_recipe(config, Path(out), progress, say=lambda text: None)
    return RunResult(Path(out), done["train"], done["results"])


def evaluate(run_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """Evaluate a trained run on its validation and test users (`mmgr evaluate`); returns results.json."""
    from mmgr.engines.base import evaluate_run
    from mmgr.rundir import RunDir

    folder = RunDir(Path(run_dir))
    with folder.writing("evaluate"):
        return evaluate_run(folder, folder.config(), progress)


def compare(run_a: str | Path, run_b: str | Path, metrics: Sequence[str] = ("ndcg@10", "hr@10"),
            resamples: int = 10_000) -> dict[str, Any]:
    """Paired bootstrap of B - A over the test users both runs evaluated (`mmgr compare`)."""
    from mmgr.evaluation.significance import compare_runs

    return compare_runs(Path(run_a), Path(run_b), "test", tuple(metrics), resamples)


class Recommender:
    """A trained run or bundle, loaded once: `recommend` by history or known user, `onboard` new items, `item`."""

    def __init__(self, service: Any) -> None:
        self._service = service

    def recommend(self, history: Sequence[str] | None = None, user_id: str | None = None, k: int = 10,
                  exclude_seen: bool = True) -> list[dict[str, Any]]:
        """Top-k items (rank, item_id, title, score) for a history of item ids (oldest first) or a known user."""
        from mmgr.serving.service import Request

        answer = self._service.recommend([Request(list(history) if history is not None else None, user_id, k,
                                                  exclude_seen)])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def onboard(self, item_id: str, title: str, description: str = "", brand: str = "",
                categories: Sequence[str] = (), image: str | Path | None = None) -> dict[str, Any]:
        """Add a new item (codes from the run's encoders and tokenizers; recommendable at once, kept in the run)."""
        from mmgr.serving.onboarding import NewItem, check_image

        data = Path(image).read_bytes() if image is not None else None
        item = NewItem(item_id, title, description, brand, list(categories),
                       check_image(data) if data is not None else None)
        return self._service.onboard(item, data)

    def item(self, item_id: str) -> dict[str, Any]:
        """A catalog item's fields (KeyError for an unknown id)."""
        return self._service.item(item_id)


def load(run_or_bundle: str | Path, onboarding: bool = True) -> Recommender:
    """The recommender of a trained run directory or an exported bundle (what `mmgr serve` answers with)."""
    from mmgr.serving.bundle import load_recommender

    return Recommender(load_recommender(Path(run_or_bundle), onboarding=onboarding))
