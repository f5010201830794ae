"""A trained generative run, composed for decoding: its data, codes, saved vocabulary, the recipe's layout over the
codes and one prefix trie per decoding target. Training builds and saves the vocabulary (`engines/method.py`);
everything else reads `vocabulary.json` and refuses codes that no longer fit it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mmgr.config import Config, ModelConfig
from mmgr.data.dataset import ITEM_SCHEMA, Dataset
from mmgr.decoding.trie import PrefixTrie
from mmgr.errors import MmgrError
from mmgr.inference.rundata import RunData, load_run_data
from mmgr.layouts import LAYOUTS
from mmgr.layouts.base import Layout
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.stage import load_codes

VOCABULARY = "vocabulary.json"


@dataclass(frozen=True)
class LayoutRecipe:
    """How a run writes its items: `model.layout` with the model's settings and the history length (what rebuilds the
    layout when items join the catalog)."""

    name: str
    model: ModelConfig
    max_history: int

    @classmethod
    def of(cls, config: Config) -> LayoutRecipe:
        return cls(config.model.layout, config.model, config.split.max_history)

    def build(self, codes: dict[str, ModalityCodes], vocab: Vocabulary) -> Layout:
        return LAYOUTS.get(self.name).build(codes, vocab, self.model, self.max_history)


@dataclass
class Prepared(RunData):
    """`RunData` plus the method's codes, layout, one decoding trie per target of the layout, and the item texts
    its objectives read (field -> text per item; training only, empty for decoding)."""

    codes: dict[str, ModalityCodes]
    layout: Layout
    tries: dict[str, PrefixTrie]
    texts: dict[str, list[str | None]]
    onboarded: int = 0               # the last items of the catalog were onboarded after training
    recipe: LayoutRecipe | None = None   # how `layout` was built (None: items cannot be added)


def code_levels(codes: dict[str, ModalityCodes], modalities: list[str], legacy: bool = False
                ) -> dict[str, list[int]]:
    """Each modality's code level sizes in the vocabulary. A multimodal run reserves every modality's missing
    code, so an item onboarded later without an image (say) fits; `legacy` gives the levels of runs trained
    before that (reserved only where an item missed the modality), which such runs still load."""
    absent = [m for m in modalities if m not in codes]
    if absent:
        raise MmgrError(f"no {absent[0]} codes in this run; run `mmgr tokenize RUN --modality {absent[0]}` "
                        f"(have: {', '.join(codes) or 'none'})")
    always = len(modalities) > 1 and not legacy
    return {m: list(codes[m].with_missing_reserved(always).sizes) for m in modalities}


def load_prepared(run: RunDir, config: Config) -> Prepared:
    """The run composed for decoding with its saved vocabulary; refused when its codes no longer fit it."""
    data = load_run_data(run, config)
    codes = load_codes(run)
    path = run.path / VOCABULARY
    if not path.is_file():
        raise MmgrError(f"{path}: no vocabulary; run `mmgr train {run.path}` first")
    vocab = Vocabulary.load(path)
    modalities = config.model.modalities
    levels, now = {m: list(sizes) for m, sizes in vocab.levels.items()}, code_levels(codes, modalities)
    if levels not in (now, code_levels(codes, modalities, legacy=True)):
        raise MmgrError(f"{run.path} was trained with another tokenizer or vocabulary ({vocab.size} tokens, "
                        f"levels {levels}; the codes now give {now}); re-run `mmgr train`")
    recipe = LayoutRecipe.of(config)
    return Prepared(data.dataset, data.user_ids, data.split, codes, *compose(codes, vocab, recipe), {}, recipe=recipe)


def compose(codes: dict[str, ModalityCodes], vocab: Vocabulary, recipe: LayoutRecipe, onboarded: int = 0
            ) -> tuple[Layout, dict[str, PrefixTrie]]:
    """The recipe's layout over `codes` and one decoding trie per target; with `onboarded` items (the last ones),
    their codes that no catalog item has under the same prefix borrow their best catalog sibling's score
    (`onboarded_borrowing`)."""
    layout = recipe.build(codes, vocab)
    tries = {}
    for name, tokens in layout.targets.items():
        trie = PrefixTrie.build(torch.from_numpy(tokens), vocab_size=vocab.size)
        if onboarded:
            trie = trie.borrowing(len(tokens) - onboarded, onboarded_borrowing(trie))
        tries[name] = trie
    return layout, tries


def onboarded_borrowing(trie: PrefixTrie) -> range:
    """The depths where an onboarded item's code borrows: every one. The model never saw an onboarded item's codes as
    a target below the deepest prefix it shares with the catalog, so it gives the first of them almost no
    probability (its collision code, when its semantic ID is a catalog item's; an earlier code, when its semantic ID
    is new), and the item would never be recommended. Scored as the best catalog sibling's there (`PrefixTrie.
    borrowing`), it is as likely as the nearest catalog item sharing its prefix; below that, under a prefix only
    onboarded items have, the model's own probabilities rank them (`benchmarks/cold_start.py` measures it)."""
    return range(trie.depth)


def with_new_items(prep: Prepared, codes: dict[str, ModalityCodes], items: pa.Table) -> Prepared:
    """`prep` with catalog rows `items` appended and `codes` (every item's, the new ones last) in place of its codes;
    the vocabulary stays the run's (codes that do not fit it are refused). The tries are `prep`'s, extended with the
    new items (no rebuild: the catalog's rows of every target table stay as they were)."""
    dataset = Dataset(prep.dataset.name, pa.concat_tables([prep.dataset.items, items.cast(ITEM_SCHEMA)]),
                      prep.dataset.sequences)
    texts = {field: [*values, *[None] * items.num_rows] for field, values in prep.texts.items()}
    if prep.recipe is None:
        raise MmgrError("these prepared items do not record how their layout was built; load the run with "
                        "load_prepared to add items")
    layout = prep.recipe.build(codes, prep.layout.vocab)
    tries = {name: extended_trie(prep.tries[name], tokens, items.num_rows)
             for name, tokens in layout.targets.items()}
    return Prepared(dataset, prep.user_ids, prep.split, codes, layout, tries, texts, prep.onboarded + items.num_rows,
                    prep.recipe)


def extended_trie(trie: PrefixTrie, tokens: np.ndarray, added: int) -> PrefixTrie:
    """`trie` with the last `added` rows of the target table `tokens` (its items first) as new items, borrowing
    (`onboarded_borrowing`)."""
    if trie.num_items + added != len(tokens):
        raise MmgrError(f"the decoding trie holds {trie.num_items} items, the codes {len(tokens) - added} before the "
                        f"{added} new ones")
    new = torch.from_numpy(np.ascontiguousarray(tokens[trie.num_items:]))
    return trie.extended(new, onboarded_borrowing(trie))


def codes_info(prep: Prepared) -> dict[str, Any]:
    """Identity of the item codes and vocabulary a model is trained on: a model never decodes with others."""
    tokens = np.ascontiguousarray(prep.layout.item_tokens)
    return {"vocab_size": prep.layout.vocab.size, "item_tokens_shape": list(tokens.shape),
            "item_tokens_sha256": hashlib.sha256(tokens.tobytes()).hexdigest(),
            "vocabulary_sha256": prep.layout.vocab.digest()}
