"""A generative method as a composition of registered parts, chosen by the recipe:

    codes of `model.modalities` -> one vocabulary (+ the objectives' task prompts, user buckets, and the subword
    tokens of the item texts that text objectives read: `model.words`, or the LM's own for `llm`)
    -> layout `model.layout` (single | late-fusion [+ switch tokens]) -> decoding trie over its item tuples
    -> training stages: [alignment `training.alignment` (translate | infonce)], then next-item.

The vocabulary is built once, by `mmgr train`, and saved as `vocabulary.json` in the run; evaluation, decoding and
recommendation read that file (and refuse codes that no longer match it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mmgr.config import Config
from mmgr.data.dataset import ITEM_SCHEMA, Dataset
from mmgr.decoding.trie import PrefixTrie
from mmgr.errors import MmgrError
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import Layout
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.stage import load_codes
from mmgr.tokenizers.words import used_words
from mmgr.training.backbones import BACKBONES
from mmgr.training.loop import NEXT_ITEM
from mmgr.training.objectives import ALIGNMENTS, OBJECTIVES, Objective
from mmgr.training.rundata import RunData, load_run_data
from mmgr.training.tasks import item_field_texts

VOCABULARY = "vocabulary.json"


@dataclass
class Stage:
    name: str             # checkpoint folder and log name
    objective: str        # the objective's registered name
    trains: Objective     # the registered objective (an ALIGNMENTS entry for the alignment stage, else OBJECTIVES)
    validated: bool       # picks its weights by validation NDCG@10 (else keeps the final weights)


@dataclass
class Prepared(RunData):
    """`RunData` plus the method's codes, layout, one decoding trie per target of the layout, and the item texts
    its objectives read (field -> text per item; empty for SID-only methods)."""

    codes: dict[str, ModalityCodes]
    layout: Layout
    tries: dict[str, PrefixTrie]
    texts: dict[str, list[str | None]]
    onboarded: int = 0               # the last items of the catalog were onboarded after training


def stages(config: Config) -> list[Stage]:
    """The recipe's training stages in order."""
    alignment, objective = config.training.alignment, config.training.objective
    plan = [Stage("align", alignment, ALIGNMENTS.get(alignment), False)] if alignment != "none" else []
    return [*plan, Stage(NEXT_ITEM, objective, OBJECTIVES.get(objective), True)]


def text_fields(config: Config) -> tuple[str, ...]:
    """The item text fields the recipe's objectives read."""
    return tuple(dict.fromkeys(field for stage in stages(config) for field in stage.trains.text_fields(config)))


def item_texts(run: RunDir, dataset: Dataset, config: Config) -> dict[str, list[str | None]]:
    from mmgr.encoders.stage import items_with_generated_text

    fields = text_fields(config)
    return item_field_texts(items_with_generated_text(run, dataset.items), fields) if fields else {}


def build_vocabulary(codes: dict[str, ModalityCodes], config: Config,
                     texts: dict[str, list[str | None]] | None = None, legacy: bool = False) -> Vocabulary:
    """The run's vocabulary. A multimodal run reserves every modality's missing code, so an item onboarded later
    without an image (say) fits; `legacy` gives the vocabulary of runs trained before that (reserved only where an
    item missed the modality), which such runs still load."""
    modalities = config.model.modalities
    absent = [m for m in modalities if m not in codes]
    if absent:
        raise MmgrError(f"no {absent[0]} codes in this run; run `mmgr tokenize RUN --modality {absent[0]}` "
                        f"(have: {', '.join(codes) or 'none'})")
    tasks = LAYOUTS.get(config.model.layout).tasks(modalities) + tuple(
        t for stage in stages(config) for t in stage.trains.tasks(modalities))
    word_model = BACKBONES.get(config.model.kind).words(config.model)
    words = used_words(word_model, [t for values in (texts or {}).values() for t in values if t])
    always = len(modalities) > 1 and not legacy
    return Vocabulary({m: list(codes[m].with_missing_reserved(always).sizes) for m in modalities}, tasks,
                      config.model.user_buckets, words, word_model if words else "")


def prepare(run: RunDir, config: Config, for_training: bool = False) -> Prepared:
    """Load the run's data and codes and compose the layout. Training (re)builds and saves the vocabulary; every
    other stage reads the saved one."""
    data = load_run_data(run, config)
    codes = load_codes(run)
    texts = item_texts(run, data.dataset, config)
    built = build_vocabulary(codes, config, texts)
    path = run.path / VOCABULARY
    if for_training:
        built.save(path)
        vocab = built
    else:
        if not path.is_file():
            raise MmgrError(f"{path}: no vocabulary; run `mmgr train {run.path}` first")
        vocab = Vocabulary.load(path)
        if vocab != built and vocab != build_vocabulary(codes, config, texts, legacy=True):
            raise MmgrError(f"{run.path} was trained with another tokenizer or vocabulary ({vocab.size} tokens, "
                            f"{dict(vocab.levels)}; the codes and recipe now give {built.size}, "
                            f"{dict(built.levels)}); re-run `mmgr train`")
    return Prepared(data.dataset, data.user_ids, data.split, codes, *compose(codes, vocab, config), texts)


def compose(codes: dict[str, ModalityCodes], vocab: Vocabulary, config: Config, onboarded: int = 0
            ) -> tuple[Layout, dict[str, PrefixTrie]]:
    """The recipe's layout over `codes` and one decoding trie per target; with `onboarded` items (the last ones),
    their collision codes borrow their catalog siblings' scores (`PrefixTrie.borrowing`)."""
    layout = LAYOUTS.get(config.model.layout).build(codes, vocab, config.model, config.split.max_history)
    tries = {}
    for name, tokens in layout.targets.items():
        trie = PrefixTrie.build(torch.from_numpy(tokens), vocab_size=vocab.size)
        if onboarded:
            trie = trie.borrowing(len(tokens) - onboarded, collision_depths(tokens[0], vocab, codes))
        tries[name] = trie
    return layout, tries


def collision_depths(tokens: np.ndarray, vocab: Vocabulary, codes: dict[str, ModalityCodes]) -> list[int]:
    """Positions of an item's target tokens that hold a collision code (a modality's `append` level)."""
    depths = []
    for depth, token in enumerate(tokens.tolist()):
        try:
            modality, level, _ = vocab.decode(token)
        except MmgrError:                                  # a special or subword token
            continue
        if codes[modality].info.get("collisions") == "append" and level == len(vocab.levels[modality]) - 1:
            depths.append(depth)
    return depths


def with_new_items(prep: Prepared, config: Config, codes: dict[str, ModalityCodes], items: pa.Table) -> Prepared:
    """`prep` with catalog rows `items` appended and `codes` (every item's, the new ones last) in place of its codes;
    the vocabulary stays the run's (codes that do not fit it are refused). The tries are `prep`'s, extended with the
    new items (no rebuild: the catalog's rows of every target table stay as they were)."""
    dataset = Dataset(prep.dataset.name, pa.concat_tables([prep.dataset.items, items.cast(ITEM_SCHEMA)]),
                      prep.dataset.sequences)
    texts = {field: [*values, *[None] * items.num_rows] for field, values in prep.texts.items()}
    layout = LAYOUTS.get(config.model.layout).build(codes, prep.layout.vocab, config.model, config.split.max_history)
    tries = {name: extended_trie(prep.tries[name], tokens, items.num_rows, prep.layout.vocab, codes)
             for name, tokens in layout.targets.items()}
    return Prepared(dataset, prep.user_ids, prep.split, codes, layout, tries, texts, prep.onboarded + items.num_rows)


def extended_trie(trie: PrefixTrie, tokens: np.ndarray, added: int, vocab: Vocabulary,
                  codes: dict[str, ModalityCodes]) -> PrefixTrie:
    """`trie` with the last `added` rows of the target table `tokens` (its items first) as new items, their
    collision codes borrowing their catalog siblings' scores."""
    if trie.num_items + added != len(tokens):
        raise MmgrError(f"the decoding trie holds {trie.num_items} items, the codes {len(tokens) - added} before the "
                        f"{added} new ones")
    new = torch.from_numpy(np.ascontiguousarray(tokens[trie.num_items:]))
    return trie.extended(new, collision_depths(tokens[0], vocab, codes))


def codes_info(prep: Prepared) -> dict[str, Any]:
    """Identity of the item codes and vocabulary a model is trained on: a model never decodes with others."""
    tokens = np.ascontiguousarray(prep.layout.item_tokens)
    return {"vocab_size": prep.layout.vocab.size, "item_tokens_shape": list(tokens.shape),
            "item_tokens_sha256": hashlib.sha256(tokens.tobytes()).hexdigest(),
            "vocabulary_sha256": prep.layout.vocab.digest()}
