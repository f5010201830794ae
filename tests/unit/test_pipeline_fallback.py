"""Multimodal recipes on data without images fall back to the modalities the data has, saying why; features made
with other settings than the recipe's are re-made, not reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmgr.config import load_config
from mmgr.errors import MmgrError
from mmgr.pipeline import fit_to_data
from tests.helpers import text_only_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def text_only(tmp_path_factory):
    """A catalog with titles and no images (like Amazon Beauty)."""
    return text_only_run(tmp_path_factory.mktemp("textonly"))[1]


def test_trialigngr_keeps_its_objective_on_text_only_data(text_only):
    fitted, reason = fit_to_data(load_config([ROOT / "configs" / "trialigngr.yaml"]), text_only)
    assert fitted.model.modalities == ["text"] and fitted.training.objective == "tmt"
    assert "objective" not in reason
    fitted, reason = fit_to_data(load_config([ROOT / "configs" / "syngr.yaml"]), text_only)
    assert fitted.training.objective == "next-item" and "objective syngr -> next-item" in reason


def test_features_made_with_other_settings_are_remade(tmp_path):
    from mmgr.pipeline import ensure_codes

    run, _ = text_only_run(tmp_path)
    said: list[str] = []
    settings = ["tokenizer.codebook_size=3", "tokenizer.levels=2", "encoders.text.fields=[title]"]
    config = load_config(overrides=["data.format=generic", f"data.path={tmp_path}", *settings])
    ensure_codes(run, "text", config, False, said.append)
    ensure_codes(run, "text", config, False, said.append)                       # current: nothing re-made
    assert said == ["features text: encoding", "codes text: fitting rq-kmeans"]
    changed = config.model_copy(deep=True)
    changed.encoders.text.fields = ["title", "description"]
    ensure_codes(run, "text", changed, False, said.append)
    assert said[2:] == ["features text: encoding", "codes text: fitting rq-kmeans"]
    assert run.manifest()["stages"]["encode.text"]["settings"]["text"]["fields"] == ["title", "description"]


@pytest.mark.parametrize("recipe", ["mgr-lf", "mgr-lfpp", "mgr-lfpp-infonce", "mgr-ef", "tiger-image"])
def test_multimodal_recipes_fall_back_to_text(text_only, recipe):
    config = load_config([ROOT / "configs" / f"{recipe}.yaml"])
    fitted, reason = fit_to_data(config, text_only)
    assert fitted.model.modalities == ["text"] and fitted.model.layout == "single"
    assert fitted.training.alignment.objective == "none" and not fitted.model.switch_tokens
    assert "has no" in reason and "image" in reason and "falls back to text" in reason, reason


def test_text_recipe_is_unchanged_and_tables_count_as_a_modality(text_only):
    config = load_config([ROOT / "configs" / "tiger.yaml"])
    assert fit_to_data(config, text_only) == (config, None)
    with_table = load_config([ROOT / "configs" / "mgr-lf.yaml"], ["tokenizer.tables={image: codes.json}"])
    fitted, reason = fit_to_data(with_table, text_only)
    assert reason is None and fitted.model.modalities == ["text", "image"]
    early = load_config([ROOT / "configs" / "mgr-ef.yaml"], ["tokenizer.tables={image: codes.json}"])
    assert fit_to_data(early, text_only)[0].model.modalities == ["text"]     # a SID table has no features to fuse


def test_no_usable_modality_is_an_error(text_only):
    config = load_config([ROOT / "configs" / "tiger-image.yaml"])
    with pytest.raises(MmgrError, match="none of the modalities"):
        fit_to_data(config.model_copy(update={"model": config.model.model_copy(update={"modalities": ["image"]})}),
                    _without_text(text_only))


def _without_text(dataset):
    import pyarrow as pa

    items = dataset.items.set_column(dataset.items.column_names.index("has_text"), "has_text",
                                     pa.array([False] * dataset.items.num_rows))
    return type(dataset)(**{**vars(dataset), "items": items})
