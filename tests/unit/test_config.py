import re
from pathlib import Path
from typing import get_args

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from mmgr.config import Config, config_keys, load_config
from mmgr.errors import ConfigError
from mmgr.parts import PARTS


def test_defaults_validate_and_round_trip():
    config = load_config()
    assert Config.model_validate(config.model_dump(mode="json")) == config


def test_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("seed: 7\ndata:\n  format: p5\n  kcore: 5\n")
    config = load_config(recipe, ["data.kcore=10", "split.max_history=20"])
    assert (config.seed, config.data.format, config.data.kcore, config.split.max_history) == (7, "p5", 10, 20)


def test_misspelt_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.kcor=5"])
    assert "unknown key 'data.kcor'" in str(err.value)
    assert "kcore" in str(err.value) and "format" in str(err.value)


def test_misspelt_key_in_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sed: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'sed'.*seed"):
        load_config(recipe)


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["data.kcore=abc"])
    assert "'data.kcore'" in str(err.value) and "expected int" in str(err.value)


def test_bad_literal_lists_choices():
    with pytest.raises(ConfigError, match="'p5'"):
        load_config(overrides=["data.format=csv"])


@pytest.mark.parametrize(("key", "kind", "extra"), [
    ("data.format", "data format", ["synthetic"]), ("encoders.fusion.method", "feature fusion", []),
    ("tokenizer.method", "tokenizer", []), ("model.kind", "model kind", []), ("model.layout", "layout", []),
    ("training.objective", "training objective", []), ("training.alignment.objective", "alignment objective", ["none"]),
    ("decoding.fusion", "fusion rule", []),
])
def test_an_unregistered_part_names_the_key_and_lists_the_registered_ones(key, kind, extra):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"{key}=nope"])
    known = ", ".join(repr(name) for name in sorted([*PARTS[kind], *extra]))
    assert f"'{key}': unknown {kind} 'nope'; known: {known}" in str(err.value)
    assert all(load_config(overrides=[f"{key}={name}"]) for name in [*PARTS[kind], *extra])


def test_malformed_override_and_recipe(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["kcore"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_every_key_is_documented():
    keys = config_keys()
    assert "data.synthetic.n_items" in keys
    assert [key for key, description in keys.items() if not description] == []


def test_every_shipped_recipe_validates():
    root = Path(__file__).resolve().parents[2]
    recipes = sorted([*(root / "configs").glob("*.yaml"), *(root / "src/mmgr/recipes").glob("*.yaml")])
    assert recipes
    for recipe in recipes:
        load_config(recipe)


def test_shipped_t5_recipes_that_write_several_sids_per_item_see_how_recent_a_token_is():
    """T5's relative-position buckets are exact only up to distance 7: with two SIDs per item the last item's codes
    sit 6-11 tokens from the end, so multimodal T5 recipes add recency embeddings."""
    recipes = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    several = [load_config(r) for r in recipes]
    several = [(r.name, c.model.recency_embeddings) for r, c in zip(recipes, several, strict=True)
               if c.model.kind == "t5" and c.model.layout != "single"]
    assert several and all(distances >= 16 for _, distances in several), several


@pytest.mark.parametrize(("override", "message"), [
    ("training.batch_size=-1", "'training.batch_size': -1 is out of range; valid range: 1 to 1000000"),
    ("tokenizer.levels=0", "'tokenizer.levels': 0 is out of range; valid range: 1 to 8"),
    ("tokenizer.codebook_size=1", "'tokenizer.codebook_size': 1 is out of range; valid range: 2 to 65536"),
    ("model.dropout=1.0", "'model.dropout': 1.0 is out of range; valid range: >= 0.0 and < 1.0"),
    ("training.lr=0", "'training.lr': 0 is out of range; valid range: > 0.0 and <= 1.0"),
    ("training.lr=.inf", "'training.lr': inf is out of range"),
    ("training.max_steps=0", "'training.max_steps': 0 is out of range; valid range: >= 1"),
    ("tokenizer.rqvae.hidden=[64,0]", "'tokenizer.rqvae.hidden.1': 0 is out of range; valid range: 1 to 65536"),
    ("model.modalities=[]", "'model.modalities': [] is out of range; valid range: a list of at least 1 item"),
    ("seed=-1", "'seed': -1 is out of range; valid range: 0 to 4294967295"),
    ("encoders.captions.top_classes=11", "'encoders.captions.top_classes': 11 is out of range; valid range: 1 to 10"),
])
def test_out_of_range_values_name_the_valid_range(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert message in str(err.value)


def test_out_of_range_in_a_recipe_names_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("training:\n  epochs: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert str(recipe) in str(err.value) and "'training.epochs': 0 is out of range; valid range: 1 to" in str(err.value)


@pytest.mark.parametrize(("overrides", "message", "fixed"), [
    (["decoding.beam_size=5", "decoding.top_k=10"], "'decoding': beam_size (5) must be >= top_k (10)",
     ["decoding.beam_size=10", "decoding.top_k=10"]),
    (["encoders.interests.min_tags=5"], "'encoders.interests': max_tags (4) must be >= min_tags (5)",
     ["encoders.interests.min_tags=5", "encoders.interests.max_tags=5"]),
    (["encoders.fusion.text_weight=0", "encoders.fusion.image_weight=0"], "both 0",
     ["encoders.fusion.text_weight=0"]),
])
def test_settings_that_must_agree_are_checked_together(overrides, message, fixed):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(overrides=overrides)
    load_config(overrides=fixed)


def test_an_unknown_modality_lists_the_ones_with_codes():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["model.modalities=[text,imgae]"])
    assert "'model.modalities.1'" in str(err.value) and "'text', 'image', 'fused'" in str(err.value)


UNBOUNDED = {"data.synthetic.seed"}   # any integer: the generator maps it to a non-negative seed


def test_every_numeric_setting_has_a_bound():
    def numeric(annotation) -> bool:
        return annotation in (int, float) or any(a in (int, float) for a in get_args(annotation))

    def walk(model: type[BaseModel], prefix: str = ""):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{name}.")
            elif numeric(field.annotation) and field.annotation is not bool:
                yield f"{prefix}{name}", field

    unbounded = [key for key, field in walk(Config) if key not in UNBOUNDED
                 and not any(isinstance(m, annotated_types.Ge | annotated_types.Gt) for m in field.metadata)]
    assert unbounded == []


def test_codebook_size_per_level():
    assert load_config(overrides=["tokenizer.codebook_size=[128,64,32]"]).tokenizer.codebook_size == [128, 64, 32]
    with pytest.raises(ConfigError, match="lists 2 sizes for 3 levels"):
        load_config(overrides=["tokenizer.codebook_size=[8,4]"])
    with pytest.raises(ConfigError, match=r"'tokenizer.codebook_size.1': 1 is out of range; valid range: 2 to 65536"):
        load_config(overrides=["tokenizer.codebook_size=[8,1,4]"])
    with pytest.raises(ConfigError, match=r"expected int or a list of int, got 'many'"):
        load_config(overrides=["tokenizer.codebook_size=many"])


def test_a_recipe_extends_another_and_overrides_it(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "base.yaml").write_text("model:\n  d_model: 96\n  num_layers: 3\ntraining:\n  lr: 0.004\n")
    (tmp_path / "child.yaml").write_text("extends: parts/base.yaml\nmodel:\n  num_layers: 5\n")
    config = load_config(tmp_path / "child.yaml")
    assert (config.model.d_model, config.model.num_layers, config.training.lr) == (96, 5, 0.004)


def test_a_recipe_that_extends_itself_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_config(tmp_path / "a.yaml")


def test_shipped_t5_recipes_share_one_setup_instead_of_copying_it():
    root = Path(__file__).resolve().parents[2] / "configs"
    methods = [p for p in sorted(root.glob("*.yaml")) if "data" not in (yaml.safe_load(p.read_text()) or {})]
    t5 = [p for p in methods if load_config(p).model.kind == "t5"]
    assert t5 and all("extends: parts/t5.yaml" in p.read_text() for p in t5), [p.name for p in t5]
