"""SASRec (Kang & McAuley 2018), ID-based, trained with a full softmax cross-entropy over the catalog
("SASRec-CE"): the classic sequential baseline, evaluated by the same leave-one-out full-ranking protocol, metrics
and result files as the generative T5 path (`mmgr.training.stage`).

Model: item embedding (row 0 = padding, item i -> token i + 1), learned position embedding aligned to the right
(the newest item always sits at position `max_history - 1`, so extra left padding changes nothing), `num_layers`
pre-norm causal `nn.TransformerEncoderLayer` blocks (GELU), a final LayerNorm; scores = hidden @ item
embeddings.T (tied), over every real item.

Training: each user's training sequence (leave-one-out `train`, i.e. s[:-2]) is cut to its last
`max_history + 1` items; inputs are seq[:-1], targets seq[1:] at every position. Each epoch shuffles users with a
generator seeded by (seed, epoch), groups them by length into batches left-padded to their real length, and
shuffles the batch order. AdamW with linear warmup and cosine decay, gradient clipping, Fabric precision (bf16
autocast or fp32), validation NDCG@10 on a fixed `seeded_sample` of validation users every `eval_every` epochs,
early stopping after `patience` validations without improvement; the best weights go to `model.safetensors`.

Resume: `checkpoints/last.safetensors` (model, optimizer, scheduler, torch RNG, loop position) is written at every
epoch end and every `checkpoint_every` steps; since an epoch's batches are a function of (seed, epoch) and the RNG
is restored, a killed run restarted on the same run directory finishes with the same weights as an uninterrupted
one. Epoch granularity is the guarantee that is tested; mid-epoch checkpoints restart at the saved batch.

Ranking: exact top-k of the last position's scores over all items (history items are not filtered, as in the T5
protocol); validation history = train part, test history = s[:-1], both cut to `max_history`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from lightning.fabric import Fabric
from torch import nn

from mmgr.config import Config, ModelConfig, TrainingConfig
from mmgr.data.dataset import Dataset
from mmgr.data.splits import Examples, LeaveOneOut, leave_one_out
from mmgr.errors import MmgrError
from mmgr.evaluation.metrics import DEFAULT_KS, per_user, summarize
from mmgr.evaluation.protocol import protocol_description, subset
from mmgr.io import write_json_atomic
from mmgr.progress import progress_bar
from mmgr.rundir import RunDir
from mmgr.training.checkpoint import load_checkpoint, load_state, load_weights
from mmgr.training.loop import (
    BEST,
    LAST,
    FitResult,
    _checkpoint,
    _my_batches,
    _peak_memory_mb,
    _validate,
    _warmup_cosine,
    make_fabric,
    seeded_sample,
)
from mmgr.training.stage import _save_per_user

PAD = 0
BUCKET_BATCHES = 64  # users are sorted by length within chunks of this many batches


# --- model ----------------------------------------------------------------------------------------

class SASRec(nn.Module):
    """Causal self-attention over item IDs; `forward(input_ids)` scores every item after the last position,
    `forward(input_ids, labels)` returns the mean full-softmax cross-entropy over non-padding positions."""

    def __init__(self, num_items: int, max_history: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads:
            raise MmgrError(f"model.d_model ({d_model}) must be divisible by model.num_heads ({num_heads})")
        self.num_items, self.max_history, self.num_heads = num_items, max_history, num_heads
        self.item_embedding = nn.Embedding(num_items + 1, d_model, padding_idx=PAD)
        self.position_embedding = nn.Embedding(max_history, d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=d_ff, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self._init_weights()

    def _init_weights(self) -> None:
        for embedding in (self.item_embedding, self.position_embedding):
            nn.init.normal_(embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded tokens (0 = padding, T <= max_history) -> (B, T, D) hidden states."""
        input_ids = input_ids[:, -self.max_history:]
        width = input_ids.size(1)
        positions = torch.arange(width, device=input_ids.device) + (self.max_history - width)   # (T,) right-aligned
        scale = math.sqrt(self.item_embedding.embedding_dim)
        x = self.item_embedding(input_ids) * scale + self.position_embedding(positions)       # (B, T, D)
        x = self.blocks(self.embedding_dropout(x), mask=self._attention_mask(input_ids))
        return self.norm(x)

    def _attention_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B * heads, T, T) bool, True = blocked: causal, no padding keys; every query may see itself, so
        padding rows stay finite (their outputs are never used)."""
        width = input_ids.size(1)
        eye = torch.eye(width, dtype=torch.bool, device=input_ids.device)
        causal = torch.ones(width, width, dtype=torch.bool, device=input_ids.device).tril()
        allowed = (causal & input_ids.ne(PAD)[:, None, :]) | eye                           # (B, T, T)
        return (~allowed).repeat_interleave(self.num_heads, dim=0)

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., num_items): dot products with the (tied) item embeddings, padding row excluded."""
        return hidden @ self.item_embedding.weight[1:].T

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Without labels: (B, num_items) scores after the last position. With labels (B, T) (item tokens, 0 =
        padding, aligned with input_ids): the scalar mean cross-entropy."""
        hidden = self.hidden(input_ids)                                                      # (B, T, D)
        if labels is None:
            return self.item_scores(hidden[:, -1])                                           # (B, N)
        labels = labels[:, -hidden.size(1):]
        real = labels.ne(PAD)                                                                # (B, T)
        logits = self.item_scores(hidden[real])                                              # (M, N)
        return F.cross_entropy(logits.float(), labels[real] - 1)


def build_sasrec(cfg: ModelConfig, num_items: int, max_history: int, seed: int) -> SASRec:
    """A freshly initialised SASRec sized by `ModelConfig` (d_model, num_layers, num_heads, d_ff, dropout)."""
    torch.manual_seed(seed)
    return SASRec(num_items, max_history, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.d_ff, cfg.dropout)


# --- batches --------------------------------------------------------------------------------------

def training_sequences(train: list[np.ndarray], max_history: int) -> list[np.ndarray]:
    """Per user with >= 2 training items, the last `max_history + 1` items as tokens (item + 1)."""
    return [seq[-(max_history + 1):].astype(np.int64) + 1 for seq in train if len(seq) >= 2]


def pad_left(rows: list[np.ndarray]) -> torch.Tensor:
    """(B, T_max) int64, each row right-aligned after PAD tokens."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, width - len(row):] = row
    return torch.from_numpy(out)


def collate_sequences(sequences: list[np.ndarray], index: np.ndarray) -> dict[str, torch.Tensor]:
    """input_ids = seq[:-1], labels = seq[1:], both (B, T) left-padded to the batch's longest sequence."""
    rows = [sequences[i] for i in index.tolist()]
    return {"input_ids": pad_left([r[:-1] for r in rows]), "labels": pad_left([r[1:] for r in rows])}


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """This epoch's batches (index arrays): users shuffled by (seed, epoch), sorted by length inside chunks of
    `BUCKET_BATCHES` batches (little padding), batch order shuffled. Always ceil(len / batch_size) batches."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).numpy()
    chunk = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


# --- training loop --------------------------------------------------------------------------------

@dataclass
class SASRecFit(FitResult):
    """`FitResult` plus the rate of predicted positions (every position of every sequence is a target)."""

    positions_per_second: float
    train_seconds: float


def fit_sasrec(run: RunDir, model: SASRec, sequences: list[np.ndarray], cfg: TrainingConfig, seed: int,
               validate, weights_info: dict[str, Any], progress: bool = True,
               fabric: Fabric | None = None) -> SASRecFit:
    """Train `model` on token `sequences`; `validate(model)` returns the validation NDCG@10 for model selection.
    Rates count training steps only (validation excluded)."""
    fabric = fabric or make_fabric(cfg, run.path / "logs")
    lengths = np.array([len(s) - 1 for s in sequences], dtype=np.int64)
    batches_per_epoch = math.ceil(len(sequences) / cfg.batch_size)
    total_steps = int(min(cfg.max_steps or math.inf, cfg.epochs * (batches_per_epoch // fabric.world_size)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(cfg.warmup_steps, total_steps))
    state = {"epoch": 0, "batch": 0, "step": 0, "best_score": -1.0, "best_epoch": -1, "stale": 0, "history": []}
    last = run.path / LAST
    if last.is_file():
        state = load_checkpoint(last, model, optimizer, scheduler)
    resumed_from = state["step"]
    model, optimizer = fabric.setup(model, optimizer)
    counts = {"samples": 0, "positions": 0, "seconds": 0.0}
    with progress_bar("training", total=total_steps - state["step"], enabled=progress and fabric.is_global_zero) \
            as advance:
        while state["epoch"] < cfg.epochs and state["step"] < total_steps and state["stale"] < cfg.patience:
            batches = epoch_batches(lengths, cfg.batch_size, seed, state["epoch"])
            order = _my_batches(list(range(len(batches))), fabric)
            started = time.perf_counter()
            model.train()
            for position in range(state["batch"], len(order)):
                batch = fabric.to_device(collate_sequences(sequences, batches[order[position]]))
                loss = _train_step(fabric, model, optimizer, scheduler, batch, cfg.grad_clip)
                state["step"], state["batch"] = state["step"] + 1, position + 1
                counts["samples"] += len(batch["labels"])
                counts["positions"] += int(batch["labels"].ne(PAD).sum())
                advance(1)
                if state["step"] % 20 == 0:
                    fabric.log_dict({"train/loss": loss, "lr": scheduler.get_last_lr()[0]}, state["step"])
                if state["step"] % cfg.checkpoint_every == 0:
                    _checkpoint(fabric, last, model, optimizer, scheduler, state)
                if state["step"] >= total_steps:
                    break
            counts["seconds"] += time.perf_counter() - started
            epoch_done = state["batch"] >= len(order)
            if epoch_done and (state["epoch"] + 1) % cfg.eval_every == 0:
                _validate(fabric, run.path, model, validate, state, weights_info)
            if epoch_done:
                state["epoch"], state["batch"] = state["epoch"] + 1, 0
            _checkpoint(fabric, last, model, optimizer, scheduler, state)
    if state["best_epoch"] < 0:  # never validated (tiny budgets): keep the final weights
        _validate(fabric, run.path, model, validate, state, weights_info)
    for logger in fabric.loggers:
        logger.finalize("success")
    seconds = max(counts["seconds"], 1e-9)
    return SASRecFit(state["step"], state["epoch"], state["best_epoch"], state["best_score"], state["history"],
                     counts["samples"] * fabric.world_size / seconds, _peak_memory_mb(), resumed_from,
                     counts["positions"] * fabric.world_size / seconds, round(counts["seconds"], 3))


def _train_step(fabric: Fabric, model: nn.Module, optimizer, scheduler, batch: dict[str, torch.Tensor],
                grad_clip: float) -> float:
    loss = model(batch["input_ids"], batch["labels"])
    fabric.backward(loss)
    fabric.clip_gradients(model, optimizer, max_norm=grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return float(loss.detach())


# --- ranking --------------------------------------------------------------------------------------

@torch.inference_mode()
def rank_all_items(model: nn.Module, histories: list[np.ndarray], top_k: int, batch_size: int = 256,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(items int64[U, k], scores float32[U, k]) best first, k = min(top_k, num_items): exact top-k of the
    last position's scores over every catalog item; users batched by history length. `histories` are item
    indices (oldest first); an empty history is scored from a lone padding token."""
    device = next(model.parameters()).device
    num_items = _unwrap_sasrec(model).num_items
    k = min(top_k, num_items)
    order = np.argsort([len(h) for h in histories], kind="stable")
    items = np.empty((len(histories), k), dtype=np.int64)
    scores = np.empty((len(histories), k), dtype=np.float32)
    model.eval()
    with progress_bar("ranking", total=len(histories), enabled=progress) as advance:
        for start in range(0, len(histories), batch_size):
            index = order[start:start + batch_size]
            rows = [np.asarray(histories[i], dtype=np.int64) + 1 if len(histories[i]) else np.array([PAD])
                    for i in index]
            top = torch.topk(model(pad_left(rows).to(device)).float(), k, dim=-1)              # (b, k)
            items[index], scores[index] = top.indices.cpu().numpy(), top.values.cpu().numpy()
            advance(len(index))
    return items, scores


def evaluate_sasrec(model: nn.Module, examples: Examples, top_k: int = 20, batch_size: int = 256,
                    ks: tuple[int, ...] = DEFAULT_KS, progress: bool = False
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics (hr/recall/ndcg/mrr @ each k <= top_k) and the ranked lists for `examples`."""
    ranked, _ = rank_all_items(model, examples.histories, top_k, batch_size, progress)
    return per_user(ranked, examples.targets, tuple(k for k in ks if k <= ranked.shape[1])), ranked


def _unwrap_sasrec(model: nn.Module) -> SASRec:
    while not isinstance(model, SASRec):
        model = model.module
    return model


# --- run stages -----------------------------------------------------------------------------------

@dataclass
class SASRecData:
    """What the SASRec stages read from a run: the dataset, user ids by row, the leave-one-out split."""

    dataset: Dataset
    user_ids: list[str]
    split: LeaveOneOut


def prepare_sasrec(run: RunDir, config: Config) -> SASRecData:
    manifest = run.manifest()
    if "dataset" not in manifest:
        raise MmgrError(f"{run.path}: no dataset; run `mmgr data import` first")
    dataset = Dataset.load(run.path, manifest["dataset"]["name"])
    split = leave_one_out(dataset.item_sequences(), config.split.max_history)
    return SASRecData(dataset, dataset.sequences["user_id"].to_pylist(), split)


def weights_info(run: RunDir, config: Config, num_items: int) -> dict[str, Any]:
    """What `model.safetensors` records so a mismatched load is refused."""
    return {"model": "sasrec", "num_items": num_items, "max_history": config.split.max_history,
            "dataset_fingerprint": run.manifest()["dataset"]["fingerprint"]}


def train_sasrec_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    """`train` stage for `model.kind: sasrec`: model.safetensors, checkpoints/last.safetensors, logs/, manifest."""
    data = prepare_sasrec(run, config)
    sequences = training_sequences(data.split.train, config.split.max_history)
    if not sequences:
        raise MmgrError(f"{run.path}: no user has two training items; nothing to train on")
    valid = subset(data.split.valid, seeded_sample(len(data.split.valid), config.training.eval_users, config.seed))
    model = build_sasrec(config.model, data.dataset.num_items, config.split.max_history, config.seed)

    def validate(current: nn.Module) -> float:
        metrics, _ = evaluate_sasrec(current, valid, top_k=10, batch_size=config.decoding.batch_size, ks=(10,))
        return float(metrics["ndcg@10"].mean())

    start = time.perf_counter()
    result = fit_sasrec(run, model, sequences, config.training, config.seed, validate,
                        weights_info(run, config, data.dataset.num_items), progress)
    summary = {**asdict(result), "train_sequences": len(sequences),
               "train_positions": int(sum(len(s) - 1 for s in sequences)), "validation_users": len(valid),
               "wall_seconds": round(time.perf_counter() - start, 3),
               "parameters": sum(p.numel() for p in model.parameters())}
    run.record("train", summary, config=config.model_dump(mode="json"))
    return summary


def load_sasrec(run: RunDir, config: Config, num_items: int) -> SASRec:
    """The best weights of the run (`model.safetensors`), checked against the dataset and config."""
    tensors, info = load_weights(run.path / BEST)
    expected = {"model": "sasrec", "num_items": num_items, "max_history": config.split.max_history}
    if {key: info.get(key) for key in expected} != expected:
        raise MmgrError(f"{run.path / BEST} does not match this run's SASRec ({expected}; it records "
                        f"{ {key: info.get(key) for key in expected} }); re-run `mmgr train`")
    model = build_sasrec(config.model, num_items, config.split.max_history, config.seed)
    load_state(model, tensors)
    return model.eval()


def evaluate_sasrec_run(run: RunDir, config: Config, progress: bool = True) -> dict[str, Any]:
    """`evaluate` stage: results.json (valid + test) and per_user_<split>.parquet, as `evaluate_run` writes."""
    data = prepare_sasrec(run, config)
    model = load_sasrec(run, config, data.dataset.num_items).to(_device(config))
    top_k = config.decoding.top_k
    protocol = {**protocol_description(config.decoding, DEFAULT_KS),
                "ranking": "full (every catalog item), exact top-k of the last position's softmax scores"}
    protocol.pop("beam_size", None)
    results: dict[str, Any] = {"protocol": protocol}
    for name, examples in (("valid", data.split.valid), ("test", data.split.test)):
        start = time.perf_counter()
        metrics, ranked = evaluate_sasrec(model, examples, top_k, config.decoding.batch_size, progress=progress)
        seconds = time.perf_counter() - start
        results[name] = {**summarize(metrics), "users": len(examples), "users_per_second": len(examples) / seconds}
        _save_per_user(run, name, data, examples, metrics, ranked)
    write_json_atomic(run.path / "results.json", results)
    run.record("evaluate", {"valid": results["valid"], "test": results["test"]})
    return results


def recommend_sasrec(run: RunDir, config: Config, user_id: str, k: int) -> list[dict[str, Any]]:
    """Top-k items (with titles) for a known user, from their full history."""
    data = prepare_sasrec(run, config)
    try:
        row = data.user_ids.index(user_id)
    except ValueError:
        raise MmgrError(f"unknown user {user_id!r}") from None
    model = load_sasrec(run, config, data.dataset.num_items)
    history = data.dataset.item_sequences()[row][-config.split.max_history:]
    items, scores = rank_all_items(model, [history], k)
    titles, ids = data.dataset.items["title"].to_pylist(), data.dataset.items["item_id"].to_pylist()
    return [{"rank": r + 1, "item_id": ids[i], "title": titles[i], "score": float(s)}
            for r, (i, s) in enumerate(zip(items[0].tolist(), scores[0].tolist(), strict=True))]


def _device(config: Config) -> torch.device:
    wants_gpu = config.training.accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")
