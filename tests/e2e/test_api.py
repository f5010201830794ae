"""The Python API: README's example runs as written (in a fresh folder), and its parts behave as the CLI does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mmgr
from mmgr.api import override_items, recipe_path
from mmgr.errors import MmgrError
from mmgr.serving.service import RequestError

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    match = re.search(r"<!-- python-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no python example after <!-- python-example -->"
    return match.group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert (tmp_path / "runs" / "example" / "results.json").is_file() and "new-item" in printed
    recommender = mmgr.load(tmp_path / "runs" / "example")
    assert recommender.item("new-item")["title"] == "A brand-new item"      # onboarded items are kept in the run
    top = recommender.recommend(history=["i0001"], k=3)
    assert [r["rank"] for r in top] == [1, 2, 3] and "i0001" not in {r["item_id"] for r in top}
    with pytest.raises(RequestError, match="unknown user_id"):
        recommender.recommend(user_id="nobody")


def test_recipes_resolve_by_name_or_path_and_unknown_ones_list_the_known(tmp_path, monkeypatch):
    assert recipe_path("quickstart").name == "quickstart.yaml"
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert recipe_path("tiger") == Path("configs/tiger.yaml")
    with pytest.raises(MmgrError, match="recipe 'tigre'.*known: .*quickstart"):
        recipe_path("tigre")
    with pytest.raises(MmgrError, match="no such file"):
        recipe_path(tmp_path / "missing.yaml")


def test_keyword_overrides_become_dotted_settings():
    assert override_items({"training__epochs": 3, "model__modalities": ["text", "image"], "seed": 7,
                           "tokenizer__method": "rq-vae"}) == [
        "training.epochs=3", 'model.modalities=["text", "image"]', "seed=7", "tokenizer.method=rq-vae"]
    config = mmgr.api.config_of("quickstart", {"training__epochs": 3, "model__modalities": ["text", "image"]})
    assert config.training.epochs == 3 and config.model.modalities == ["text", "image"]
