"""Collision handling, the token vocabulary and imported SID tables (fixtures and the published real tables)."""

import json

import numpy as np
import pytest

from mmgr.data.formats.lcrec import read_lcrec
from mmgr.data.formats.p5 import read_p5
from mmgr.errors import DataError, MmgrError
from mmgr.tokenizers.codes import SPECIALS, ModalityCodes, Vocabulary
from mmgr.tokenizers.collisions import append_level, collision_rate, reassign
from mmgr.tokenizers.external import read_index
from mmgr.tokenizers.pipeline import appended_codes, appended_codes_reference


def test_collision_rate_counts_items_sharing_a_tuple():
    assert collision_rate(np.array([[0, 1], [0, 1], [0, 2], [1, 1]])) == 0.5


def test_append_numbers_each_group_and_keeps_headroom():
    codes, size = append_level(np.array([[0, 1], [0, 1], [0, 2], [0, 1]]), capacity=4)
    assert codes[:, -1].tolist() == [0, 1, 0, 2] and size == 6       # max(4, 2 * largest group of 3)
    assert collision_rate(codes) == 0


def test_new_items_are_numbered_after_the_catalog_items_that_share_their_codes():
    rng = np.random.default_rng(0)
    semantic = rng.integers(0, 3, size=(300, 3))                     # 27 tuples: many shared
    resolved, size = append_level(semantic, capacity=4)
    existing = ModalityCodes("text", resolved, [3, 3, 3, size], np.zeros(300, dtype=bool))
    unseen = np.array([[3, 3, 3], [3, 4, 3], [4, 3, 3], [4, 4, 4], [3, 3, 4]])
    raw = np.concatenate([semantic[:20], semantic[:5], unseen])                  # repeated and unseen tuples
    numbers = appended_codes(existing, raw)
    assert numbers.tolist() == appended_codes_reference(existing, raw).tolist()
    assert numbers[-5:].tolist() == [0] * 5 and numbers[0] == (semantic == semantic[0]).all(axis=1).sum()
    full = ModalityCodes("text", resolved, [3, 3, 3, int(resolved[:, -1].max()) + 1], existing.missing)
    largest = semantic[resolved[:, -1].argmax()][None]
    for assign in (appended_codes, appended_codes_reference):
        with pytest.raises(MmgrError, match="capacity of the disambiguation level"):
            assign(full, largest)


def test_reassign_moves_later_items_to_their_next_free_code():
    codes = np.array([[0, 1], [0, 1], [0, 1]])
    candidates = np.array([[1, 2, 3], [1, 2, 3], [1, 1, 3]])
    assert reassign(codes, candidates).tolist() == [[0, 1], [0, 2], [0, 3]]
    with pytest.raises(MmgrError, match="collisions=append"):
        reassign(codes, np.array([[1], [1], [1]]))


def test_vocabulary_gives_every_code_its_own_token():
    vocab = Vocabulary({"text": [4, 4, 2], "image": [3, 3]}, tasks=("align",), user_buckets=5)
    base = len(SPECIALS) + 1 + 5
    assert vocab.size == base + 10 + 6
    assert vocab.encode("text", np.array([[0, 0, 0], [3, 3, 1]])).tolist() == [
        [base, base + 4, base + 8], [base + 3, base + 7, base + 9]]
    assert vocab.encode("image", np.array([[2, 0]])).tolist() == [[base + 10 + 2, base + 13]]
    assert vocab.decode(base + 13) == ("image", 1, 0)
    assert vocab.token("<switch>") == SPECIALS.index("<switch>") and vocab.specials[-1] == "<task:align>"
    assert len(SPECIALS) + 1 <= vocab.user_token("user-42") < base
    with pytest.raises(MmgrError, match="do not fit"):
        vocab.encode("text", np.array([[4, 0, 0]]))


def test_vocabulary_round_trip(tmp_path):
    vocab = Vocabulary({"text": [4, 4]}, tasks=("next",), user_buckets=3)
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab


def test_index_fixture_and_bad_tables(tmp_path):
    path = tmp_path / "x.index.json"
    path.write_text(json.dumps({"7": ["<a_1>", "<b_2>"], "3": ["<a_0>", "<b_5>"]}))
    assert read_index(path, ["3", "7"]).tolist() == [[0, 5], [1, 2]]
    with pytest.raises(DataError, match="run has 2 items, the table 2.*1 of the run's items.*'9'.*1 of its keys.*'7'"):
        read_index(path, ["3", "9"])
    path.write_text(json.dumps({"0": ["<a_1>", "<c_2>"]}))
    with pytest.raises(DataError, match="field '0'.*level 1"):
        read_index(path, ["0"])
    path.write_text(json.dumps({"0": ["<A_12>", "<B_3>"], "1": ["<a_4>", "<B_0>"]}))   # MQL4GRec image spelling
    assert read_index(path, ["0", "1"]).tolist() == [[12, 3], [4, 0]]


def test_missing_modality_policy_reserves_a_code_and_keeps_tuples_unique():
    codes = ModalityCodes("image", np.array([[1, 2, 0], [0, 0, 0], [0, 0, 1], [3, 1, 0]]), [4, 4, 2],
                          np.array([False, True, True, False]))
    policy = codes.with_missing_reserved()
    assert policy.sizes == [5, 5, 2]                                    # one reserved "missing" code per level
    assert policy.codes.tolist() == [[1, 2, 0], [4, 4, 0], [4, 4, 1], [3, 1, 0]]
    assert len({tuple(r) for r in policy.codes.tolist()}) == 4 and policy.missing.tolist() == codes.missing.tolist()
    complete = ModalityCodes("text", codes.codes, [4, 4, 2], np.zeros(4, dtype=bool))
    assert complete.with_missing_reserved() is complete                 # nothing changes without missing items
    reserved = complete.with_missing_reserved(always=True)              # a multimodal run's vocabulary
    assert reserved.sizes == [5, 5, 2] and reserved.codes.tolist() == complete.codes.tolist()
    later = complete.with_row(np.zeros(3), missing=True).with_missing_reserved(always=True)
    assert later.sizes == reserved.sizes and later.codes[-1].tolist() == [4, 4, 0]   # an item onboarded without it


def test_a_vocabulary_without_the_missing_code_names_the_fix():
    from mmgr.layouts.base import item_code_tokens

    complete = ModalityCodes("image", np.array([[1, 2, 0], [0, 0, 0]]), [4, 4, 2], np.zeros(2, dtype=bool))
    later = {"image": complete.with_row(np.zeros(3), missing=True)}
    assert item_code_tokens(later, Vocabulary({"image": [5, 5, 2]}))["image"].shape == (3, 3)
    with pytest.raises(MmgrError, match="no code for a missing image.*re-run `mmgr train`"):
        item_code_tokens(later, Vocabulary({"image": [4, 4, 2]}))          # trained before the reservation


def test_published_tables_match_their_documented_collisions(shared_data):
    beauty = read_p5(shared_data / "amazon-beauty-2014").build()
    codes = read_index(shared_data / "amazon-beauty-2014/lcrec/Beauty.index.json",
                       beauty.items["item_id"].to_pylist(), align="row")
    assert codes.shape == (12101, 4) and len({tuple(r) for r in codes.tolist()}) == 12088
    scientific = read_lcrec(shared_data / "amazon-scientific-2018").build()
    distinct = {}
    for name in ("rqvae_native", "letter_native", "mql4grec"):
        table = read_index(shared_data / f"amazon-scientific-2018/indexes/{name}.Scientific.index.json",
                           scientific.items["item_id"].to_pylist())
        distinct[name] = len({tuple(r) for r in table.tolist()})
    assert distinct == {"rqvae_native": 3790, "letter_native": 4317, "mql4grec": 4344}
    arts = read_lcrec(shared_data / "amazon-arts-2018").build()
    ids = arts.items["item_id"].to_pylist()
    assert ids[:2] == ["B003D7B7C2", "B007J5YBTK"]              # real ASINs from Arts.item2id
    text, image = (read_index(shared_data / f"amazon-arts-2018/Arts.index_{name}.json", ids,
                              source_ids=arts.source_indices()) for name in ("lemb", "vitemb"))
    assert text.shape == image.shape == (9416, 4)
    assert len({tuple(r) for r in text.tolist()}) == 9378 and len({tuple(r) for r in image.tolist()}) == 9408
