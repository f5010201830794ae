"""Known answers for the generative path: in a world whose next item is fixed by the last one, TIGER (text SIDs)
and MGR-LF (text + image SIDs, with and without switch tokens and alignment), on the T5 and the causal backbones, must
rank the right item first (SynGR and MQL4GRec, whose lists are fused: `test_fused_known_answer.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgr.backbones import BACKBONES
from mmgr.data.splits import Examples
from mmgr.decoding.beam import constrained_beam_search
from mmgr.decoding.trie import PrefixTrie
from mmgr.engines.base import evaluate_run
from mmgr.engines.method import stage_data
from mmgr.errors import MmgrError
from mmgr.evaluation.likelihood import heldout_examples, heldout_loss
from mmgr.evaluation.protocol import rank_items, subset
from mmgr.inference.generative import build_model, load_model
from mmgr.inference.prepared import load_prepared
from mmgr.layouts.base import pad_batch, prompt
from mmgr.models.seq2seq import build_t5
from mmgr.objectives.alignment import next_item_states
from mmgr.objectives.base import ALIGNMENTS
from mmgr.rundir import RunDir
from mmgr.weights import load_state, load_weights
from tests.helpers import N_ITEMS, trained_run, write_successor_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_successor_world(tmp_path_factory.mktemp("successor"), [f"item {i}" for i in range(N_ITEMS)])


@pytest.mark.parametrize("recipe", [
    ["model.layout=single", "model.modalities=[text]"],                                       # TIGER
    ["model.layout=late-fusion", "model.modalities=[text,image]"],                            # MGR-LF
    ["model.kind=causal", "model.layout=single", "model.modalities=[text]"],                  # causal TIGER
    ["model.kind=causal", "model.layout=late-fusion", "model.modalities=[text,image]", "model.switch_tokens=true"],
    ["model.kind=item-causal", "model.layout=single", "model.modalities=[text]"],             # item-level causal
    ["model.kind=item-causal", "model.layout=late-fusion", "model.modalities=[text,image]"],
], ids=["tiger", "mgr-lf", "causal-tiger", "causal-mgr-lf-switch", "item-causal-tiger", "item-causal-mgr-lf"])
def test_fixed_successor_is_learned(world: Path, tmp_path: Path, recipe: list[str]) -> None:
    run, summary = trained_run(world, tmp_path / "run", [*recipe, "training.epochs=12"])
    results = evaluate_run(run, run.config(), progress=False)
    assert results["test"]["hr@10"] >= 0.95, (results["test"], summary["history"])
    assert results["test"]["hr@1"] >= 0.8
    assert summary["best_score"] == pytest.approx(results["valid"]["ndcg@10"], abs=1e-9)  # one decoding path
    losses = [h["valid_loss"] for h in summary["history"]]
    assert min(losses) < 0.25 * losses[0], losses                 # the held-out SIDs, from a guess to nearly certain
    assert_loss_is_the_search_score(run)


def test_a_run_monitoring_its_validation_loss_keeps_the_lowest_loss_weights(world: Path, tmp_path: Path) -> None:
    run, summary = trained_run(world, tmp_path / "run", ["model.kind=item-causal", "model.layout=single",
                                                         "model.modalities=[text]", "training.epochs=12",
                                                         "training.monitor=loss"])
    losses = [h["valid_loss"] for h in summary["history"]]
    assert summary["best_score"] == min(losses) and summary["best_epoch"] == summary["history"][
        losses.index(min(losses))]["epoch"]
    assert load_weights(run.path / "model.safetensors")[1]["valid_loss"] == min(losses)
    assert evaluate_run(run, run.config(), progress=False)["test"]["hr@10"] >= 0.95


def assert_loss_is_the_search_score(run: RunDir, users: int = 6) -> None:
    """The validation loss of an item is minus the beam search's log-probability of it: teacher forcing the search's
    own input. Here for each user's top-ranked item: loss (per token) x depth = -score x (depth + 1)."""
    config = run.config()
    prep = load_prepared(run, config)
    model, backbone = load_model(run, config, prep), BACKBONES.get(config.model.kind)
    valid = subset(prep.split.valid, np.arange(users))
    names = [prep.user_ids[u] for u in valid.users.tolist()]
    items, scores = rank_items(model, prep.layout, names, valid.histories, prep.tries, config.decoding,
                               search=backbone.search, prompt=backbone.prompt)
    depth = prep.tries["item"].depth
    for user in range(users):
        top = Examples(valid.users[[user]], [valid.histories[user]], items[[user], 0])
        loss = heldout_loss(model, heldout_examples(prep.layout, prep.user_ids, top, backbone.prompt), 1)
        assert loss * depth == pytest.approx(-scores[user, 0] * (depth + 1), rel=1e-4, abs=1e-5)


def test_lfpp_aligns_then_trains_with_switches_and_missing_images(world: Path, tmp_path: Path) -> None:
    """MGR-LF++ (switch tokens + translation alignment) on a catalog whose first 6 items have no image: two stages,
    each with its own checkpoint; the items without an image stay recommendable."""
    run, summary = trained_run(world, tmp_path / "run", [
        "model.layout=late-fusion", "model.modalities=[text,image]", "model.switch_tokens=true",
        "training.alignment.objective=translate", "training.alignment.epochs=40", "training.epochs=12"],
        missing_images=6)
    assert set(summary["stages"]) == {"align", "next-item"}
    assert summary["stages"]["align"]["train_examples"] == 2 * (N_ITEMS - 6)    # both directions, items with both
    for stage in ("align", "next-item"):
        assert (run.path / "checkpoints" / stage / "last.safetensors").is_file()
    vocab = json.loads((run.path / "vocabulary.json").read_text())
    assert vocab["tasks"] == ["text->image", "image->text"] and vocab["levels"]["image"] == [9, 8]
    assert translation_accuracy(run, "text->image") >= 0.9        # the alignment stage learned its task
    results = evaluate_run(run, run.config(), progress=False)
    assert results["test"]["hr@10"] >= 0.95


def test_lfpp_on_the_item_level_backbone_translates_then_learns_the_fixed_successor(world: Path,
                                                                                     tmp_path: Path) -> None:
    run, summary = trained_run(world, tmp_path / "run", [
        "model.kind=item-causal", "model.user_buckets=0", "model.layout=late-fusion", "model.modalities=[text,image]",
        "model.switch_tokens=true", "training.alignment.objective=translate", "training.alignment.epochs=40",
        "training.epochs=12"])
    assert summary["stages"]["align"]["train_examples"] == 2 * N_ITEMS
    config = run.config()
    prep = load_prepared(run, config)
    model = build_model(config, prep)
    load_state(model, load_weights(run.path / "checkpoints" / "align" / "final.safetensors")[0])
    data, _ = stage_data(ALIGNMENTS.get("translate"), prep, config)
    batch = data.collate(np.arange(2 * N_ITEMS))
    with torch.no_grad():
        logits = model.eval()(batch["input_ids"], batch["attention_mask"]).logits[:, :-1]   # (B, T - 1, V)
    written = batch["labels"][:, 1:] != -100
    right = (logits.argmax(dim=-1) == batch["labels"][:, 1:])[written]
    assert right.float().mean() >= 0.9                                   # each SID written from the other, alone
    results = evaluate_run(run, config, progress=False)
    assert results["test"]["hr@10"] >= 0.95 and results["test"]["hr@1"] >= 0.8


def test_infonce_alignment_pulls_each_items_two_sids_together(world: Path, tmp_path: Path) -> None:
    run, summary = trained_run(world, tmp_path / "run", [
        "model.layout=late-fusion", "model.modalities=[text,image]", "training.alignment.objective=infonce",
        "training.alignment.epochs=40", "training.epochs=1"])
    assert summary["stages"]["align"]["objective"] == "infonce"
    config = run.config()
    prep = load_prepared(run, config)
    model = aligned_model(run, config, prep)
    first, second = (pooled_states(model, prep.layout.modality_tokens[m], prep.layout.vocab) for m in ("text",
                                                                                                      "image"))
    nearest = (first @ second.T).argmax(dim=1)
    assert (nearest == torch.arange(N_ITEMS)).float().mean() >= 0.9       # chance: 1/60


def test_infonce_on_the_item_level_backbone_aligns_then_learns_the_fixed_successor(world: Path,
                                                                                   tmp_path: Path) -> None:
    """After the InfoNCE stage an item's text view and image view (one-item histories) are each other's nearest;
    then next-item training still reaches the known answer."""
    run, summary = trained_run(world, tmp_path / "run", [
        "model.kind=item-causal", "model.user_buckets=0", "model.layout=late-fusion", "model.modalities=[text,image]",
        "model.switch_tokens=true", "training.alignment.objective=infonce", "training.alignment.epochs=40",
        "training.epochs=12"])
    assert summary["stages"]["align"]["objective"] == "infonce"
    config = run.config()
    prep = load_prepared(run, config)
    model = build_model(config, prep)
    load_state(model, load_weights(run.path / "checkpoints" / "align" / "final.safetensors")[0])
    data, _ = stage_data(ALIGNMENTS.get("infonce"), prep, config)
    batch = data.collate(np.arange(N_ITEMS))
    with torch.no_grad():
        states = next_item_states(model.eval(), batch["input_ids"], batch["attention_mask"])
    text, image = torch.nn.functional.normalize(states, dim=-1).chunk(2)
    assert ((text @ image.T).argmax(dim=1) == torch.arange(N_ITEMS)).float().mean() >= 0.9    # chance: 1/60
    results = evaluate_run(run, config, progress=False)
    assert results["test"]["hr@10"] >= 0.95 and results["test"]["hr@1"] >= 0.8


def aligned_model(run: RunDir, config, prep) -> torch.nn.Module:
    model = build_t5(config.model, prep.layout.vocab, config.seed)
    load_state(model, load_weights(run.path / "checkpoints" / "align" / "final.safetensors")[0])
    return model.eval()


def pooled_states(model: torch.nn.Module, tokens: np.ndarray, vocab) -> torch.Tensor:
    eos = np.full((len(tokens), 1), vocab.token("<eos>"))
    ids = torch.from_numpy(np.concatenate([tokens, eos], axis=1))
    with torch.no_grad():
        states = model.get_encoder()(input_ids=ids).last_hidden_state.mean(dim=1)
    return torch.nn.functional.normalize(states, dim=-1)


def translation_accuracy(run: RunDir, task: str) -> float:
    """Share of items (with both modalities) whose target-modality SID the aligned model decodes first."""
    config = run.config()
    prep = load_prepared(run, config)
    model = aligned_model(run, config, prep)
    source, target = task.split("->")
    items = np.flatnonzero(~prep.codes["image"].missing)
    rows = [prompt(prep.layout.vocab, task, prep.layout.modality_tokens[source][i]) for i in items]
    input_ids, mask = pad_batch(rows)
    trie = PrefixTrie.build(torch.from_numpy(prep.layout.modality_tokens[target]), vocab_size=prep.layout.vocab.size)
    found, _ = constrained_beam_search(model, input_ids, mask, trie, beam_size=5, top_k=1)
    return float((found[:, 0].numpy() == items).mean())


def test_causal_backbone_refuses_alignment_stages(world: Path, tmp_path: Path) -> None:
    with pytest.raises(MmgrError, match="causal backbone does not train translate"):
        trained_run(world, tmp_path / "run", ["model.kind=causal", "model.layout=late-fusion",
                                               "model.modalities=[text,image]",
                                               "training.alignment.objective=translate"])
