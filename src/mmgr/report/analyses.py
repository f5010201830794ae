"""The modality analyses (`mmgr.evaluation.modality`) as report tables: planted user kinds, late-fusion
correspondence, the split of multimodal rows' hits by the single-modality rows' hits, where multimodal rows' token
importance goes, each fused list against the fusion, top-10 overlap of single-SID runs and the fused SID's
dependence on each modality."""

from __future__ import annotations

from typing import Any

from mmgr.report.paired import bootstrap_text

Table = tuple[list[str], list[list[str]]]


def analysis_sections(analyses: dict[str, Any]) -> list[tuple[str, str, Table]]:
    """(id, heading, table) of each analysis present."""
    out = []
    if analyses.get("by_user_kind"):
        out.append(("user-kinds", "Test HR@10 / NDCG@10 by planted user kind (users of each kind)",
                    user_kind_table(analyses["by_user_kind"])))
    if analyses.get("correspondence"):
        out.append(("correspondence", "Late fusion: is the top-1 item right in its text part, its image part, both "
                                      "(users whose target has both modalities)",
                    correspondence_table(analyses["correspondence"])))
    if analyses.get("pid"):
        out.append(("pid", "Each multimodal row's HR@10 hits: also hit by the text-only and the image-only rows "
                           "(redundant), by one of them (unique), or by neither (needs both)",
                    pid_table(analyses["pid"])))
    if analyses.get("saliency"):
        out.append(("saliency", "Which modality each multimodal row reads: share of its token importance on each "
                                "modality's codes, over its training rows holding both",
                    saliency_table(analyses["saliency"])))
    if analyses.get("lists"):
        out.append(("lists", "Rows that fuse several ranked lists: each list alone and their fusion on the test users "
                             "(HR@10 / NDCG@10; the fused NDCG@10 minus each list's, 95% CI)",
                    lists_table(analyses["lists"])))
    if analyses.get("top10_overlap"):
        out.append(("overlap", "Overlap of the top-10 lists of single-SID runs (mean share of shared items)",
                    (["runs", "top-10 overlap"], [[pair, f"{value:.3f}"]
                                                  for pair, value in analyses["top10_overlap"].items()])))
    if analyses.get("fused_sid_ami"):
        out.append(("dominance", "Early fusion: adjusted mutual information of the fused SID with each modality's "
                                 "SID, by prefix length", ami_table(analyses["fused_sid_ami"])))
    return out


def user_kind_table(kinds: dict[str, dict[str, dict[str, float]]]) -> Table:
    labels = sorted(next(iter(kinds.values())))
    header = ["method", *(f"{k} ({next(iter(kinds.values()))[k]['users']})" for k in labels)]
    return header, [[name, *(hr_ndcg(by[k]) for k in labels)]
                    for name, by in kinds.items()]


def correspondence_table(rows: dict[str, dict[str, float]]) -> Table:
    keys = ("both_right", "text_right_image_wrong", "image_right_text_wrong", "both_wrong")
    header = ["method", "users", *(k.replace("_", " ") for k in keys), "items the text part names"]
    return header, [[name, str(r["users"]), *(f"{r[k]:.3f}" for k in keys),
                     f"{r['items_named_by_text_part']:.3f}" if "items_named_by_text_part" in r else "-"]
                    for name, r in rows.items()]


def pid_table(rows: dict[str, dict[str, Any]]) -> Table:
    keys = ("redundant", "unique_text", "unique_image", "synergy")
    header = ["method", "hits", *(k.replace("_", " ").replace("synergy", "needs both") for k in keys),
              "lost (hit by a single-modality row only)"]
    return header, [[name, str(r["bimodal_hits"]), *(f"{r['share_of_bimodal_hits'][k]:.3f}" for k in keys),
                     str(r["lost"])] for name, r in rows.items()]


def saliency_table(rows: dict[str, dict[str, Any]]) -> Table:
    modalities = list(next(iter(rows.values()))["mean"])
    first = modalities[0]
    header = ["method", "importance", "rows", *(f"mean share {m}" for m in modalities),
              *(f"rows {m} leads" for m in modalities), f"{first} share 10% / 50% / 90%"]
    return header, [[name, r["measure"], str(r["rows"]), *(f"{r['mean'][m]:.3f}" for m in modalities),
                     *(f"{r['leads'][m]:.3f}" for m in modalities),
                     " / ".join(f"{v:.2f}" for v in r["quantiles"][first].values())] for name, r in rows.items()]


def lists_table(rows: dict[str, dict[str, Any]]) -> Table:
    targets = list(next(iter(rows.values()))["alone"])
    header = ["method", "fusion", "users", "fused", *(f"{t} alone" for t in targets),
              *(f"fused - {t}" for t in targets), "a list's top 10 holds the target", "fused top 10 in every list"]
    return header, [[name, f"{r['rule']} (+{r['bonus']:g})" if r["rule"] == "mean-bonus" else r["rule"],
                     str(r["rows"]), hr_ndcg(r["fused"]), *(hr_ndcg(r["alone"][t]) for t in targets),
                     *(bootstrap_text(r["fused_vs_alone"][t]) for t in targets), f"{r['any_list_hr@10']:.3f}",
                     f"{r['in_every_list']:.3f}"] for name, r in rows.items()]


def hr_ndcg(metrics: dict[str, float]) -> str:
    return f"{metrics['hr@10']:.3f} / {metrics['ndcg@10']:.3f}"


def ami_table(ami: dict[str, list[float]]) -> Table:
    levels = max(len(v) for v in ami.values())
    header = ["modality", *(f"{n} code{'s' if n > 1 else ''}" for n in range(1, levels + 1))]
    return header, [[m, *(f"{v:.3f}" for v in values)] for m, values in ami.items()]
