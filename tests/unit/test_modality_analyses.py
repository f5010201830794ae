"""MGR's modality analyses on hand-made codes and ranked lists whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from mmgr.evaluation.modality import by_user_kind, code_ami, correspondence, topk_overlap


def test_ami_is_one_for_a_relabelling_and_near_zero_for_independent_codes():
    rng = np.random.default_rng(0)
    text = rng.integers(0, 8, size=(2000, 2))
    relabelled = (text + 3) % 8                                        # same partition, other code names
    independent = rng.integers(0, 8, size=(2000, 2))
    assert code_ami(relabelled, text) == pytest.approx([1.0, 1.0])
    assert max(abs(v) for v in code_ami(independent, text)) < 0.02
    fused_follows_text_first_level = np.stack([text[:, 0], independent[:, 1]], axis=1)
    first, second = code_ami(fused_follows_text_first_level, text)
    assert first == pytest.approx(1.0) and second < 0.6                 # level 2 = prefixes of two codes


def test_topk_overlap():
    assert topk_overlap([[1, 2, 3, 4]], [[4, 3, 9, 8]], k=4) == 0.5
    assert topk_overlap([[1, 2], [5, 6]], [[1, 2], [7, 8]], k=2) == 0.5


def test_correspondence_counts_each_modality_part():
    parts = {"text": np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), "image": np.array([[5, 5], [6, 6], [5, 5], [7, 7]])}
    targets = np.array([0, 0, 0, 0])
    top1 = np.array([0, 1, 2, -1])      # right; text part wrong but image wrong; image right, text wrong; nothing
    out = correspondence(top1, targets, parts)
    assert out == {"text_right_image_wrong": 0.0, "image_right_text_wrong": 0.25, "both_right": 0.25,
                   "both_wrong": 0.5}
    parts["text"][1] = [0, 0]                                          # item 1 now shares the target's text SID
    assert correspondence(top1, targets, parts)["text_right_image_wrong"] == 0.25


def test_breakdown_by_user_kind():
    rows = {"user_id": ["a", "b", "c"], "hr@10": [1.0, 0.0, 1.0], "ndcg@10": [0.5, 0.0, 1.0]}
    out = by_user_kind(rows, {"a": "text", "b": "text", "c": "image"})
    assert out == {"image": {"users": 1, "hr@10": 1.0, "ndcg@10": 1.0},
                   "text": {"users": 2, "hr@10": 0.5, "ndcg@10": 0.25}}


def test_analyses_choose_runs_by_their_manifest_not_their_name(tmp_path):
    """Runs named anything: the fused/text/image single-SID runs are compared, the late-fusion run gets the
    correspondence analysis; a late-fusion run named like TIGER does not fool it."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmgr.evaluation.modality import analyse_runs
    from mmgr.tokenizers.codes import ModalityCodes

    base = tmp_path / "base"
    for modality, seed in (("text", 0), ("image", 1)):
        codes = np.random.default_rng(seed).integers(0, 4, size=(6, 2))
        ModalityCodes(modality, codes, [4, 4], np.zeros(6, dtype=bool)).save(
            base / "codes" / f"{modality}.safetensors", "f")
    layouts = {"alpha": ("single", ["text"]), "beta": ("single", ["image"]), "tiger-text": ("late-fusion",
                                                                                           ["text", "image"])}
    runs = {}
    for name, (layout, modalities) in layouts.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps(
            {"config": {"model": {"kind": "t5", "layout": layout, "modalities": modalities}}}))
        pq.write_table(pa.table({"user_id": ["u0", "u1"], "target": [1, 2], "ranked": [[1, 3], [0, 2]],
                                 **{m: [1.0, 0.0] for m in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@20")}}),
                       folder / "per_user_test.parquet")
        runs[name] = folder
    out = analyse_runs(runs, base)
    assert list(out["top10_overlap"]) == ["alpha vs beta"]
    assert list(out["correspondence"]) == ["tiger-text"]


def test_unique_share_counts_items_no_other_item_shares_codes_with():
    from mmgr.evaluation.modality import unique_share

    assert unique_share(np.array([[0, 1], [0, 1], [1, 2], [1, 3]])) == 0.5     # items 2 and 3 alone


def test_hits_split_matches_users_by_id_and_counts_each_part():
    from mmgr.evaluation.modality import hits_split

    mine = {"user_id": ["a", "b", "c", "d", "e"], "hr@10": [1.0, 1.0, 1.0, 0.0, 1.0]}
    text = {"user_id": ["e", "d", "c", "b", "a"], "hr@10": [0.0, 1.0, 0.0, 1.0, 1.0]}     # another user order
    image = {"user_id": ["a", "b", "c", "d", "e"], "hr@10": [1.0, 0.0, 0.0, 0.0, 0.0]}
    out = hits_split(mine, text, image)
    assert out["bimodal_hits"] == 4 and out["lost"] == 1                         # d: text only
    assert out["share_of_bimodal_hits"] == {"redundant": 0.25, "unique_text": 0.25, "unique_image": 0.0,
                                            "synergy": 0.5}                         # a; b; c and e
