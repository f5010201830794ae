"""The report names what a run actually trained on: imported code tables by their shape, item-id models as such."""

from __future__ import annotations

from mmgr.config import Config
from mmgr.report.runs import method_of


def config(**model) -> dict:
    raw = Config().model_dump(mode="json")
    raw["model"].update(model)
    return raw


def test_imported_tables_are_named_by_their_shape_not_the_recipes_unused_tokenizer():
    stages = {"tokenize.text": {"source": "Arts.index_lemb.json", "codebook_sizes": [253, 256, 256, 256]},
              "tokenize.image": {"source": "Arts.index_vitemb.json", "codebook_sizes": [256, 256, 256, 256]}}
    method = method_of(config(modalities=["text", "image"], layout="late-fusion"), stages)
    assert method["tokenizer"] == ("text: imported 4 x 253-256 + collision level; "
                                   "image: imported 4 x 256 + collision level")
    assert method["modalities"] == ["text", "image"]


def test_a_model_without_codes_uses_item_ids():
    method = method_of(config(kind="sasrec"), {})
    assert method["modalities"] == ["item ids"] and method["tokenizer"] == "- (item ids)"


def test_fitted_codes_show_the_tokenizer_settings():
    raw = config()
    raw["tokenizer"].update(method="rq-vae", levels=3, codebook_size=256, collisions="append")
    assert method_of(raw, {"tokenize.text": {"tokenizer": "rq-vae"}})["tokenizer"] == \
        "text: rq-vae 3 x 256 + collision level"
