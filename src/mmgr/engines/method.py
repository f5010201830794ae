"""A generative method as a composition of registered parts, chosen by the recipe:

    codes of `model.modalities` -> one vocabulary (+ the objectives' task prompts, user buckets, and the subword
    tokens of the item texts that text objectives read: `model.words`, or the LM's own for `llm`)
    -> layout `model.layout` (single | late-fusion [+ switch tokens] | bimodal | unimodal | unimodal-wide)
    -> decoding trie over its item tuples (`inference/prepared.py`)
    -> training stages: [alignment `training.alignment.objective` (translate | infonce)], then the main objective.

The vocabulary is built once, by `mmgr train`, and saved as `vocabulary.json` in the run; evaluation, decoding and
recommendation read that file (and refuse codes that no longer match it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmgr.backbones import BACKBONES
from mmgr.config import Config
from mmgr.data.dataset import Dataset
from mmgr.inference.prepared import VOCABULARY, LayoutRecipe, Prepared, code_levels, compose
from mmgr.inference.rundata import load_run_data
from mmgr.layouts import LAYOUTS
from mmgr.objectives.base import ALIGNMENTS, OBJECTIVES, Batching, Objective
from mmgr.objectives.tasks import item_field_texts
from mmgr.rundir import RunDir
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.stage import load_codes
from mmgr.tokenizers.words import used_words
from mmgr.training.loop import NEXT_ITEM, TrainData


@dataclass
class Stage:
    name: str             # checkpoint folder and log name
    objective: str        # the objective's registered name
    trains: Objective     # the registered objective (an ALIGNMENTS entry for the alignment stage, else OBJECTIVES)
    validated: bool       # picks its weights by validation NDCG@10 (else keeps the final weights)


def stages(config: Config) -> list[Stage]:
    """The recipe's training stages in order."""
    alignment, objective = config.training.alignment.objective, config.training.objective
    plan = [Stage("align", alignment, ALIGNMENTS.get(alignment), False)] if alignment != "none" else []
    return [*plan, Stage(NEXT_ITEM, objective, OBJECTIVES.get(objective), True)]


def settings_of(config: Config, objective: Objective) -> Any:
    """The `training` section an objective reads (None where it reads none): all it sees of the recipe."""
    return getattr(config.training, objective.settings) if objective.settings else None


def batching(config: Config) -> Batching:
    return Batching(config.training.batch_size, config.seed, config.split.max_history,
                    BACKBONES.get(config.model.kind).decoder_only)


def stage_data(objective: Objective, prep: Prepared, config: Config) -> tuple[TrainData, int]:
    """An objective's training data for the run, given its own settings and the run's batching."""
    return objective.train_data(prep, batching(config), settings_of(config, objective))


def text_fields(config: Config) -> tuple[str, ...]:
    """The item text fields the recipe's objectives read."""
    return tuple(dict.fromkeys(field for stage in stages(config)
                               for field in stage.trains.text_fields(settings_of(config, stage.trains))))


def item_texts(run: RunDir, dataset: Dataset, config: Config) -> dict[str, list[str | None]]:
    from mmgr.encoders.stage import items_with_generated_text

    fields = text_fields(config)
    return item_field_texts(items_with_generated_text(run, dataset.items), fields) if fields else {}


def build_vocabulary(codes: dict[str, ModalityCodes], config: Config,
                     texts: dict[str, list[str | None]] | None = None) -> Vocabulary:
    """The run's vocabulary: its codes' levels, the layout's and objectives' task prompts, user buckets and the
    subword tokens of the texts its objectives read."""
    modalities = config.model.modalities
    tasks = LAYOUTS.get(config.model.layout).tasks(modalities) + tuple(
        t for stage in stages(config) for t in stage.trains.tasks(modalities))
    word_model = BACKBONES.get(config.model.kind).words(config.model)
    words = used_words(word_model, [t for values in (texts or {}).values() for t in values if t])
    return Vocabulary(code_levels(codes, modalities), tasks, config.model.user_buckets, words,
                      word_model if words else "")


def prepare_training(run: RunDir, config: Config) -> Prepared:
    """Load the run's data, codes and item texts, build and save the vocabulary, and compose the layout."""
    data = load_run_data(run, config)
    codes = load_codes(run)
    texts = item_texts(run, data.dataset, config)
    vocab = build_vocabulary(codes, config, texts)
    vocab.save(run.path / VOCABULARY)
    recipe = LayoutRecipe.of(config)
    return Prepared(data.dataset, data.user_ids, data.split, codes, *compose(codes, vocab, recipe), texts,
                    recipe=recipe)
