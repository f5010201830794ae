"""Modality analyses of MGR (arXiv 2503.23333) over evaluated runs of one dataset.

- Dominance of early fusion: adjusted mutual information between the fused SID and each unimodal SID, level by
  level (semantic levels; the collision level is left out), and the overlap of the top-K items predicted by the
  fused, text-only and image-only models (each run's kind is read from its manifest, never from its name).
- Correspondence of late fusion (runs trained with the late-fusion layout): for the top-1 generated tuple, how often
  its text part is right while its image part is wrong, and the reverse (a part is "right" when its semantic codes
  equal the target item's), over the users whose target item has both modalities (the reserved "missing" tuple
  would count as a right image part), and the share of items that the text part alone names (their image part is a
  forced suffix in the trie).
- Synergy (SynGR, arXiv 2605.18920): each multimodal run's HR@10 hits split by whether the text-only and the
  image-only runs also hit (`synergy.pid_estimate`: redundant, unique to one modality, needing both), when both
  single-modality runs are present.
- Saliency: the share of each multimodal run's token importance on each modality's codes, as the run recorded it
  after training (`report/saliency.py`, `analysis/saliency.json`).
- Fused lists (rows decoding several targets, SynGR and MQL4GRec): each list alone against their fusion on the test
  users, as the run recorded it after training (`report/lists.py`, `analysis/lists.json`).
- On the synthetic world: every metric broken down by the planted user kind (text, image, both, synergy).

Everything is computed from the runs' per-user Parquet files, codes and recorded analyses; nothing is decoded here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import adjusted_mutual_info_score

from mmgr.tokenizers.codes import ModalityCodes

SALIENCY = Path("analysis") / "saliency.json"   # `report.saliency.record_saliency`
LISTS = Path("analysis") / "lists.json"         # `report.lists.record_lists`

METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@20")


def semantic_codes(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A modality's codes without the collision level, and its missing-item flags (None without such codes)."""
    if not path.is_file():
        return None
    codes = ModalityCodes.load(path)
    return (codes.codes[:, :-1] if codes.appended else codes.codes), codes.missing


def read_measured(run: Path, relative: Path) -> dict[str, Any] | None:
    """A run's measured analysis (`report/measured.py`: SALIENCY, LISTS), or None: not measured, or its weights had
    nothing to measure (a file of `{"rows": 0}`)."""
    path = run / relative
    found = json.loads(path.read_text()) if path.is_file() else {}
    return found if found.get("rows", 0) > 0 else None


def model_settings(run: Path) -> dict[str, Any]:
    """The `model` section a run was trained with (its manifest), {} when it has none."""
    manifest = run / "manifest.json"
    return json.loads(manifest.read_text()).get("config", {}).get("model", {}) if manifest.is_file() else {}


def layout_of(run: Path) -> str | None:
    return model_settings(run).get("layout")


def one_sid(run: Path) -> str | None:
    """The modality of a run that generates one SID of one modality (TIGER-text/-image, MGR-EF's fused), else None."""
    model = model_settings(run)
    modalities = model.get("modalities", [])
    single = model.get("layout") == "single" and model.get("kind") != "sasrec" and len(modalities) == 1
    return modalities[0] if single else None


def is_multimodal(run: Path) -> bool:
    """A run whose SIDs read both modalities: several modalities, or the fused one."""
    modalities = model_settings(run).get("modalities", [])
    return len(modalities) > 1 or "fused" in modalities


def code_ami(fused: np.ndarray, other: np.ndarray) -> list[float]:
    """AMI between fused and unimodal codes at each shared level (level l = the prefix of l + 1 codes)."""
    out = []
    for level in range(min(fused.shape[1], other.shape[1])):
        a = _prefix_ids(fused[:, :level + 1])
        b = _prefix_ids(other[:, :level + 1])
        out.append(float(adjusted_mutual_info_score(a, b)))
    return out


def _prefix_ids(codes: np.ndarray) -> np.ndarray:
    return np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)


def topk_overlap(a: list[list[int]], b: list[list[int]], k: int = 10) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / k over users (same user order)."""
    return float(np.mean([len(set(x[:k]) & set(y[:k])) / k for x, y in zip(a, b, strict=True)]))


def correspondence(top1: np.ndarray, targets: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, float]:
    """Shares of users whose top-1 item matches the target in each modality's semantic codes."""
    found = top1 >= 0
    right = {m: found & (codes[np.where(found, top1, 0)] == codes[targets]).all(axis=1) for m, codes in parts.items()}
    text, image = right["text"], right["image"]
    return {"text_right_image_wrong": float((text & ~image).mean()),
            "image_right_text_wrong": float((image & ~text).mean()),
            "both_right": float((text & image).mean()), "both_wrong": float((~text & ~image).mean())}


def per_user(run: Path, split: str = "test") -> dict[str, Any]:
    table = pq.read_table(run / f"per_user_{split}.parquet")
    return {name: table[name].to_pylist() for name in table.column_names}


def by_user_kind(rows: dict[str, Any], kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """Mean of each metric per planted user kind."""
    labels = np.array([kinds[u] for u in rows["user_id"]])
    out = {}
    for kind in sorted(set(labels.tolist())):
        mask = labels == kind
        out[kind] = {"users": int(mask.sum()), **{m: float(np.mean(np.array(rows[m])[mask])) for m in METRICS
                                                  if m in rows}}
    return out


def analyse_runs(runs: dict[str, Path], base: Path | None = None) -> dict[str, Any]:
    """The analyses that the given runs (name -> evaluated run directory) allow. Each modality's codes (and the
    synthetic world's planted users) are read from `base` when it has them, else from the first run that does: runs
    of one suite share data and tokenizer settings, so their codes agree. A late-fusion run's correspondence uses
    its own codes where it has them."""
    out: dict[str, Any] = {}
    sources = [*([base] if base is not None else []), *runs.values()]
    loaded = {m: _first_codes(sources, m) for m in ("text", "image", "fused")}
    codes = {m: None if value is None else value[0] for m, value in loaded.items()}
    if codes["fused"] is not None:
        out["fused_sid_ami"] = {m: code_ami(codes["fused"], codes[m]) for m in ("text", "image")
                                if codes[m] is not None}
    rows = {name: per_user(path) for name, path in runs.items() if (path / "per_user_test.parquet").is_file()}
    single = {one_sid(runs[name]): name for name in rows if one_sid(runs[name])}     # SID modality -> run
    pairs = [("fused", "text"), ("fused", "image"), ("text", "image")]
    overlap = {f"{single[a]} vs {single[b]}": topk_overlap(rows[single[a]]["ranked"], rows[single[b]]["ranked"])
               for a, b in pairs if a in single and b in single}
    if overlap:
        out["top10_overlap"] = overlap
    if "text" in single and "image" in single:
        multimodal = [name for name in rows if is_multimodal(runs[name])]
        if multimodal:
            out["pid"] = {name: hits_split(rows[name], rows[single["text"]], rows[single["image"]])
                          for name in multimodal}
    correspondences = {name: late_fusion_correspondence([runs[name], *sources], row) for name, row in rows.items()
                       if layout_of(runs[name]) == "late-fusion"}
    if correspondences:
        out["correspondence"] = correspondences
    for key, relative in (("saliency", SALIENCY), ("lists", LISTS)):
        measured = {name: found for name, path in runs.items() if (found := read_measured(path, relative))}
        if measured:
            out[key] = measured
    world = next((s / "raw" / "world.json" for s in sources if (s / "raw" / "world.json").is_file()), None)
    if world is not None:
        kinds = {user: info["kind"] for user, info in json.loads(world.read_text())["users"].items()}
        out["by_user_kind"] = {name: by_user_kind(row, kinds) for name, row in rows.items()}
    return out


def hits_split(mine: dict[str, Any], text: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """`pid_estimate` of a multimodal run's HR@10 hits against the text-only and image-only runs' hits, user by user
    (users matched by id)."""
    from mmgr.evaluation.synergy import pid_estimate

    hit = [dict(zip(r["user_id"], np.array(r["hr@10"]) > 0, strict=True)) for r in (mine, text, image)]
    users = [u for u in mine["user_id"] if u in hit[1] and u in hit[2]]
    return pid_estimate(*(np.array([h[u] for u in users]) for h in hit))


def _first_codes(sources: list[Path], modality: str) -> tuple[np.ndarray, np.ndarray] | None:
    return next((found for s in sources if (found := semantic_codes(s / "codes" / f"{modality}.safetensors"))
                 is not None), None)


def late_fusion_correspondence(sources: list[Path], row: dict[str, Any]) -> dict[str, float]:
    """`correspondence` over the users whose target item has both modalities (the reserved "missing" tuple would
    count as a right image part), with the text and image codes of the first source holding them (the run's own)."""
    text, image = (_first_codes(sources, m) for m in ("text", "image"))
    assert text is not None and image is not None, f"{sources[0]}: a late-fusion run without text and image codes"
    complete = ~(text[1] | image[1])
    targets = np.array(row["target"])
    keep = complete[targets]
    top1 = np.array([r[0] if r else -1 for r in row["ranked"]])[keep]
    return {**correspondence(top1, targets[keep], {"text": text[0], "image": image[0]}), "users": int(keep.sum()),
            "items_named_by_text_part": unique_share(text[0])}


def unique_share(codes: np.ndarray) -> float:
    """Share of items whose codes (I, L) no other item has: in a late-fusion trie with text first, the share of items
    whose image part is a forced suffix once the text part is written (it cannot correct a text error)."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] == 1).mean())


def plot_summary(summary: dict[str, Any], prefix: Path) -> list[Path]:
    """PNG plots of a benchmark summary: metrics per method (+ per user kind when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    names = list(rows)
    paths = []
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 1.1), 3.6))
    width = 0.8 / 3
    for index, metric in enumerate(("hr@10", "ndcg@10", "hr@1")):
        ax.bar(np.arange(len(names)) + (index - 1) * width, [rows[n]["test"][metric] for n in names], width,
               label=metric)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test")
    ax.legend(fontsize=8)
    ax.set_title(f"{prefix.name}: equal training budget per method", fontsize=9)
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "-metrics.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    kinds = summary["analyses"].get("by_user_kind")
    if kinds:
        labels = sorted(next(iter(kinds.values())))
        grid = np.array([[kinds[n][k]["hr@10"] for k in labels] for n in names])
        fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(names) + 1.4))
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for (i, j), value in np.ndenumerate(grid):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=7)
        fig.colorbar(image, ax=ax, label="test HR@10")
        ax.set_title("HR@10 by planted user kind", fontsize=9)
        fig.tight_layout()
        paths.append(prefix.with_name(prefix.name + "-user-kinds.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
