from pathlib import Path

import pytest

from mmgr.config import Config, config_keys, load_config
from mmgr.errors import ConfigError


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
