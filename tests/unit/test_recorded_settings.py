"""Settings recorded by earlier versions are read today: a stage made before a setting existed is reused, a
checkpoint written before it resumes, a moved setting is carried by a migration, and a changed value never passes."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import mmgr.config_migrations as migrations
from mmgr.config import load_config
from mmgr.pipeline import TRAINING_SECTIONS, made_with, settings_digest
from mmgr.training.checkpoint import checkpoint_progress
from tests.helpers import train

CONFIG = load_config(overrides=["training.lr=0.004", "model.d_model=64"])        # lr default: 0.002


def recorded(config=CONFIG) -> dict:
    dumped = config.model_dump(mode="json")
    return {key: dumped[key] for key in TRAINING_SECTIONS}


def without(settings: dict, section: str, key: str) -> dict:
    """`settings` as a version before `section.key` existed recorded them."""
    copy = json.loads(json.dumps(settings))
    del copy[section][key]
    return copy


def renamed(settings: dict, section: str, key: str, old: str) -> dict:
    copy = json.loads(json.dumps(settings))
    copy[section][old] = copy[section].pop(key)
    return copy


def test_a_stage_is_reused_exactly_when_its_recorded_settings_read_today_are_the_requested_ones():
    now = recorded()
    assert made_with({"settings": now, "settings_sha256": settings_digest(now)}, None, CONFIG, TRAINING_SECTIONS)
    # made before training.patience existed: the setting takes its default, as it did then
    assert made_with({"settings": without(now, "training", "patience"), "settings_sha256": "x"}, None, CONFIG,
                     TRAINING_SECTIONS)
    other = load_config(overrides=["training.lr=0.003", "model.d_model=64"])
    assert not made_with({"settings": now}, None, other, TRAINING_SECTIONS)
    # a setting missing from the record reads as today's default (0.002), not the requested 0.004
    assert not made_with({"settings": without(now, "training", "lr")}, None, CONFIG, TRAINING_SECTIONS)
    assert not made_with({"settings": None, "settings_sha256": None}, None, CONFIG, TRAINING_SECTIONS)  # killed
    assert not made_with({"settings": {**now, "training": {"no_such": 1}}}, None, CONFIG, TRAINING_SECTIONS)


def test_stages_recorded_by_digest_only_are_matched_through_the_config_the_manifest_held():
    before = CONFIG.model_dump(mode="json")
    legacy = {"settings_sha256": settings_digest(recorded())}
    assert made_with(legacy, before, CONFIG, TRAINING_SECTIONS)
    moved_on = load_config(overrides=["training.lr=0.003", "model.d_model=64"])
    # the manifest held other settings since: its sections are not the digest's
    assert not made_with(legacy, moved_on.model_dump(mode="json"), moved_on, TRAINING_SECTIONS)
    assert not made_with(legacy, None, CONFIG, TRAINING_SECTIONS)
    assert made_with(None, before, CONFIG, TRAINING_SECTIONS)    # made before stages were recorded at all


def test_a_moved_setting_is_carried_by_a_migration(monkeypatch):
    old = renamed(recorded(), "training", "lr", "learning_rate")
    assert not made_with({"settings": old}, None, CONFIG, TRAINING_SECTIONS)

    def learning_rate_to_lr(raw):
        training = raw.get("training", {})
        if "learning_rate" in training:
            training["lr"] = training.pop("learning_rate")
        return raw

    monkeypatch.setattr(migrations, "MIGRATIONS", [learning_rate_to_lr])
    assert made_with({"settings": old}, None, CONFIG, TRAINING_SECTIONS)
    assert load_config(overrides=["training.learning_rate=0.004", "model.d_model=64"]) == CONFIG   # old recipes too


def rewrite_setup(path, edit) -> None:
    """Rewrite a checkpoint's recorded setup as `edit` returns it (an earlier version's checkpoint)."""
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["mmgr"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open API
    meta["progress"] = edit(meta["progress"])
    save_file(tensors, str(path), metadata={"mmgr": json.dumps(meta)})


@pytest.mark.parametrize(("edit", "resumes"), [
    (lambda p: {**p, "setup_settings": without(p["setup_settings"], "training", "weight_decay")}, True),
    (lambda p: {**p, "setup_settings": {**p["setup_settings"], "batching": "another scheme"}}, False),
    (lambda p: {**p, "setup_settings": without(p["setup_settings"], "training", "lr")}, False),   # 3e-3: not 2e-3
], ids=["setting-added-since", "other-batching", "explicit-value-differs"])
def test_a_checkpoint_resumes_across_versions_that_add_settings(tmp_path, edit, resumes):
    train(tmp_path, epochs=1)
    last = tmp_path / "checkpoints" / "next-item" / "last.safetensors"
    assert checkpoint_progress(last)["setup_settings"]["training"]["lr"] == 3e-3
    rewrite_setup(last, edit)
    _, again = train(tmp_path, epochs=1)
    assert again.resumed_from_step == (6 if resumes else 0)


def test_a_checkpoint_that_recorded_only_its_digest_resumes_when_it_is_this_setup(tmp_path):
    from mmgr.training.resume import setup_id
    from tests.helpers import settings

    train(tmp_path, epochs=1)
    last = tmp_path / "checkpoints" / "next-item" / "last.safetensors"
    digest = setup_id({}, settings())
    rewrite_setup(last, lambda p: {k: v for k, v in p.items() if k != "setup_settings"} | {"setup": digest})
    _, again = train(tmp_path, epochs=1)
    assert again.resumed_from_step == 6


def test_the_flat_alignment_settings_of_earlier_versions_read_as_the_alignment_section():
    new = load_config(overrides=["training.alignment.objective=infonce", "training.alignment.epochs=3",
                                 "training.alignment.temperature=0.1"])
    flat = new.model_dump(mode="json")
    flat["training"] |= {"alignment": "infonce", "alignment_epochs": 3, "alignment_temperature": 0.1}
    assert made_with({"settings": {key: flat[key] for key in TRAINING_SECTIONS}}, None, new, TRAINING_SECTIONS)
    assert load_config(overrides=["training.alignment=infonce", "training.alignment_epochs=3",
                                  "training.alignment_temperature=0.1"]) == new     # recipes in the old words too
    assert load_config(overrides=["training.alignment=none"]).training.alignment.objective == "none"


def test_the_flat_llm_settings_of_earlier_versions_read_as_the_llm_section():
    new = load_config(overrides=["model.kind=llm", "model.llm.pretrained=some/lm", "model.llm.lora.rank=4"])
    flat = new.model_dump(mode="json")
    llm = flat["model"].pop("llm")
    flat["model"] |= {"pretrained": llm["pretrained"], "lora": llm["lora"]}
    assert made_with({"settings": {key: flat[key] for key in TRAINING_SECTIONS}}, None, new, TRAINING_SECTIONS)
    assert load_config(overrides=["model.kind=llm", "model.pretrained=some/lm", "model.lora.rank=4"]) == new


def test_a_stage_recorded_by_its_digest_is_reused_on_every_later_run_too(tmp_path):
    """Each run rewrites the manifest's config in today's shape before the reuse check: the digest matched through
    the earlier config must leave the settings themselves behind, or the next run would not match."""
    from mmgr.pipeline import reused
    from mmgr.rundir import RunDir

    old_shape = CONFIG.model_dump(mode="json")
    old_shape["training"] |= {"alignment": "none", "alignment_epochs": 5, "alignment_temperature": 0.07}
    run = RunDir.create(tmp_path / "run", CONFIG)
    held = {key: old_shape[key] for key in TRAINING_SECTIONS}
    run.record("train", {"epochs_run": 3})
    run.record("pipeline.train", {"settings_sha256": settings_digest(held)}, config=old_shape)
    for _ in range(2):                                   # as `run_recipe` does, twice
        before = run.manifest()["config"]
        run.record("pipeline", {}, config=CONFIG.model_dump(mode="json"))
        assert reused(run, "train", CONFIG, TRAINING_SECTIONS, before, lambda line: None)["epochs_run"] == 3
    assert run.manifest()["stages"]["pipeline.train"]["settings"] == recorded()


def test_a_saved_config_of_an_earlier_version_takes_recipes_and_overrides_in_todays_words():
    old = CONFIG.model_dump(mode="json")                 # a run's manifest config as an earlier version saved it
    old["training"]["alignment"], old["training"]["alignment_epochs"] = "infonce", 3
    old["model"]["pretrained"] = old["model"].pop("llm")["pretrained"]
    config = load_config("configs/mgr-lfpp.yaml", ["training.alignment.epochs=9", "model.llm.pretrained=/my/lm"],
                         base=old)
    assert (config.training.alignment.objective, config.training.alignment.epochs) == ("translate", 9)
    assert config.model.llm.pretrained == "/my/lm"
    assert load_config(base=old).training.alignment.epochs == 3


def test_an_override_in_earlier_words_changes_only_what_it_names():
    config = load_config("configs/mgr-lfpp-infonce.yaml", ["training.alignment.temperature=0.2",
                                                           "training.alignment=translate"])
    assert (config.training.alignment.objective, config.training.alignment.temperature) == ("translate", 0.2)
