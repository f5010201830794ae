"""The name -> module map (`mmgr.parts`) and the registries agree both ways, names are read without importing any
part, and a part registered from outside the package (one registration) is accepted by the config and trained
through the normal entry point."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmgr
from mmgr.config import load_config
from mmgr.data.importer import import_into_run
from mmgr.decoding.fusion import FUSIONS
from mmgr.engines.base import train_run
from mmgr.errors import ConfigError
from mmgr.objectives.base import OBJECTIVES
from mmgr.objectives.next_item import NextItem
from mmgr.parts import PARTS
from mmgr.registry import Registry
from mmgr.tokenizers.codes import ModalityCodes

NEW_OBJECTIVE = "next-item-again"
TINY = ["data.format=synthetic", "data.synthetic.n_items=40", "data.synthetic.n_users=30",
        "data.synthetic.image_size=16", "model.d_model=16", "model.num_layers=1", "model.num_decoder_layers=1",
        "model.num_heads=2", "model.d_kv=8", "model.d_ff=32", "model.user_buckets=0", "training.batch_size=16",
        "training.max_steps=3", "training.eval_users=0", "training.precision=32-true", "training.accelerator=cpu",
        "split.max_history=4", "decoding.beam_size=10", "decoding.top_k=10"]


class NextItemAgain(NextItem):
    """next-item under another name: a part added from outside the package."""


@pytest.fixture(scope="module")
def registries() -> dict[str, Registry]:
    """Every registry by kind, after importing every module of mmgr (one that registers a name the map does not give
    it fails to import)."""
    for module in pkgutil.walk_packages(mmgr.__path__, "mmgr."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    return {value.kind: value for module in list(sys.modules.values()) if module.__name__.startswith("mmgr.")
            for value in vars(module).values() if isinstance(value, Registry)}


@pytest.fixture(scope="module")
def new_objective() -> str:
    OBJECTIVES.register(NEW_OBJECTIVE)(NextItemAgain())
    return NEW_OBJECTIVE


def test_every_registry_has_a_map_and_every_mapped_name_is_registered(registries):
    assert sorted(registries) == sorted(PARTS)
    for kind, modules in PARTS.items():
        for name, module in modules.items():
            if module.startswith("mmgr."):                     # (names added by tests map to the test module)
                assert registries[kind].get(name) is not None, (kind, name)


def test_a_package_module_registers_only_the_names_mapped_to_it():
    with pytest.raises(ValueError, match="mmgr.decoding.other registers fusion rule 'min', but mmgr.parts does not"):
        exec('FUSIONS.register("min")', {"__name__": "mmgr.decoding.other", "FUSIONS": FUSIONS})
    with pytest.raises(ValueError, match="'max', but mmgr.parts maps it to mmgr.decoding.fusion"):
        exec('FUSIONS.register("max")', {"__name__": "mmgr.decoding.other", "FUSIONS": FUSIONS})
    with pytest.raises(ValueError, match="tests.unit.test_registry registers fusion rule 'max', but mmgr.parts maps"):
        FUSIONS.register("max")                                # code outside the package adds names, takes none
    with pytest.raises(ValueError, match="fusion rule 'max' registered twice"):
        exec('FUSIONS.register("max")(max)', {"__name__": "mmgr.decoding.fusion", "FUSIONS": FUSIONS})


def test_names_and_config_validation_import_no_part():
    code = ("import sys; from mmgr.config import load_config; from mmgr.data.formats import READERS; "
            "load_config(overrides=['data.format=p5', 'tokenizer.method=rq-vae', 'model.kind=sasrec', "
            "'model.layout=bimodal', 'training.objective=syngr', 'training.alignment.objective=infonce', "
            "'decoding.fusion=rrf', 'encoders.fusion.method=joint']); "
            "assert 'p5' in READERS.names(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('mmgr.data.formats.', "
            "'mmgr.training', 'mmgr.tokenizers', 'mmgr.layouts', 'mmgr.encoders', 'mmgr.decoding'))))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(mmgr.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"


def test_config_accepts_a_new_objective_and_lists_it_when_refusing_a_name(new_objective):
    assert load_config(overrides=[f"training.objective={new_objective}"]).training.objective == new_objective
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["training.objective=next-itme"])
    assert ("'training.objective': unknown training objective 'next-itme'; known: 'mql4grec', 'next-item', "
            f"'{new_objective}', 'syngr', 'syngr-released', 'tmt'") in str(err.value)


def test_a_new_objective_trains_through_the_normal_entry_point(new_objective, tmp_path):
    config = load_config(overrides=[*TINY, f"training.objective={new_objective}"])
    run, dataset, _ = import_into_run(config, tmp_path / "run")
    write_text_codes(run.path, len(dataset.items), run.manifest()["dataset"]["fingerprint"])
    summary = train_run(run, run.config(), progress=False)
    assert summary["stages"]["next-item"]["objective"] == new_objective
    assert summary["steps"] == 3 and summary["history"][-1]["step"] == 3 and (run.path / "model.safetensors").is_file()


def write_text_codes(run_path: Path, n_items: int, fingerprint: str) -> None:
    """Arbitrary distinct 2-level text SIDs (8 x 8 codes): training needs codes, not good ones."""
    grid = np.array([(a, b) for a in range(8) for b in range(8)])
    codes = grid[np.random.default_rng(0).permutation(64)[:n_items]]
    ModalityCodes("text", codes, [8, 8], np.zeros(n_items, dtype=bool)).save(
        run_path / "codes" / "text.safetensors", fingerprint)
