"""Model bundles: `mmgr export` writes one, `load_bundle` / `mmgr serve` load it, and a bundle whose parts do not
match (format version, a changed part, another vocabulary, another item set, a stale trie) is refused by name."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from mmgr.errors import MmgrError
from mmgr.inference.ranker import recommend
from mmgr.io import sha256_file, write_json_atomic
from mmgr.rundir import RunDir
from mmgr.serving.bundle import BUNDLE, BundleError, load_bundle
from mmgr.serving.launch import start_server, stop_server
from mmgr.serving.service import Request
from tests.helpers import mmgr, run_args


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trained TIGER runs on different synthetic catalogs (40 and 48 items), each exported as a bundle."""
    folder = tmp_path_factory.mktemp("bundle")
    made = {}
    for name, items in (("a", 40), ("b", 48)):
        run = folder / name
        mmgr(*run_args("tiger", run, folder / "cache"), "model.user_buckets=20", f"data.synthetic.n_items={items}")
        mmgr("export", str(run), "--out", str(folder / f"{name}.bundle"))
        made[name] = (run, folder / f"{name}.bundle")
    return made


def copy_of(bundle, tmp_path):
    target = tmp_path / "copy.bundle"
    shutil.copytree(bundle, target)
    return target


def rehash(bundle, part: str) -> None:
    """Record `part`'s current digest in bundle.json (a consistent-looking bundle with a foreign part)."""
    description = json.loads((bundle / BUNDLE).read_text())
    description["parts"][part] = sha256_file(bundle / part)
    write_json_atomic(bundle / BUNDLE, description)


def test_bundle_holds_the_serving_parts_and_recommends_as_the_run(runs):
    run, bundle = runs["a"]
    description = json.loads((bundle / BUNDLE).read_text())
    assert description["format_version"] == 1 and description["items"] == 40
    assert {"model.safetensors", "vocabulary.json", "items.parquet", "sequences.parquet", "codes/text.safetensors",
            "tokenizers/text.json", "trie/item.safetensors"} <= set(description["parts"])
    assert not any(part.startswith(("checkpoints/", "logs/", "features/")) for part in description["parts"])
    recommender = load_bundle(bundle, onboarding=False)
    served = recommender.recommend([Request(user_id="u0003", k=5, exclude_seen=False)])[0]
    from_run = recommend(RunDir(run), RunDir(run).config(), "u0003", 5)
    assert [r["item_id"] for r in served] == [r["item_id"] for r in from_run]
    assert np.allclose([r["score"] for r in served], [r["score"] for r in from_run])


def test_a_bundle_of_another_format_version_is_refused(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    description = json.loads((bundle / BUNDLE).read_text())
    write_json_atomic(bundle / BUNDLE, {**description, "format_version": 2})
    with pytest.raises(BundleError, match="bundle format version 2, this mmgr reads version 1"):
        load_bundle(bundle)


def test_a_changed_or_missing_part_is_named(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    (bundle / "tokenizers" / "text.json").unlink()
    shutil.copy(runs["b"][1] / "model.safetensors", bundle / "model.safetensors")
    with pytest.raises(BundleError) as error:
        load_bundle(bundle)
    assert "tokenizers/text.json is missing" in str(error.value)
    assert "model.safetensors differs from the exported file" in str(error.value)


def test_a_vocabulary_from_another_run_is_refused_even_when_rehashed(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    shutil.copy(runs["b"][1] / "vocabulary.json", bundle / "vocabulary.json")
    rehash(bundle, "vocabulary.json")
    with pytest.raises(BundleError, match="vocabulary.json .* is not the exported vocabulary"):
        load_bundle(bundle)
    description = json.loads((bundle / BUNDLE).read_text())        # and when its digest is forged as well
    write_json_atomic(bundle / BUNDLE, {**description,
                                        "vocabulary_sha256": json.loads((runs["b"][1] / BUNDLE).read_text())[
                                            "vocabulary_sha256"]})
    with pytest.raises(BundleError, match="model.safetensors was trained with vocabulary"):
        load_bundle(bundle)


def test_another_item_set_is_refused_naming_the_counts(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    import pyarrow.parquet as pq

    items = pq.read_table(bundle / "items.parquet")
    renamed = items.set_column(0, "item_id", [[f"x{i}" for i in range(items.num_rows)]])
    pq.write_table(renamed, bundle / "items.parquet")
    rehash(bundle, "items.parquet")
    with pytest.raises(MmgrError, match="items.parquet holds 40 items .* exported with 40"):
        load_bundle(bundle)


def test_a_trie_the_codes_no_longer_give_is_refused(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    shutil.copy(runs["b"][1] / "trie" / "item.safetensors", bundle / "trie" / "item.safetensors")
    rehash(bundle, "trie/item.safetensors")
    with pytest.raises(BundleError, match=r"the 'item' trie the codes give \(40 items\) is not the exported one \(48"):
        load_bundle(bundle)


def test_mmgr_serve_runs_a_bundle_and_onboards_into_it(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    process, url = start_server(bundle, ("--max-wait-ms", "1"))
    try:
        added = httpx.post(f"{url}/items", data={"item_id": "new-1", "title": "a brand new thing"}, timeout=60)
        assert added.status_code == 201, added.text
        reply = httpx.post(f"{url}/recommend", json={"history": ["new-1"], "k": 40, "exclude_seen": False},
                           timeout=60).json()
        assert len(reply["items"]) == 40
        assert httpx.get(f"{url}/items/new-1").json()["title"] == "a brand new thing"
    finally:
        stop_server(process)
    assert (bundle / "serving" / "onboarded.sqlite").is_file()
    load_bundle(bundle, onboarding=False)                          # live state is not a checked part


def test_items_onboarded_into_a_run_travel_with_its_bundle(runs, tmp_path):
    from mmgr.inference.ranker import load_ranker
    from mmgr.serving.onboarding import NewItem, Onboarder
    from mmgr.serving.service import Recommender

    run = RunDir(tmp_path / "run")
    shutil.copytree(runs["a"][0], run.path, ignore=shutil.ignore_patterns("serving"))
    Recommender(load_ranker(run, run.config()), onboarder=Onboarder(run, run.config())).onboard(
        NewItem("new-1", "a brand new thing"))
    mmgr("export", str(run.path), "--out", str(tmp_path / "out.bundle"))
    assert load_bundle(tmp_path / "out.bundle").item("new-1")["title"] == "a brand new thing"


def test_mmgr_serve_refuses_a_damaged_bundle_with_a_message(runs, tmp_path):
    bundle = copy_of(runs["a"][1], tmp_path)
    (bundle / "codes" / "text.safetensors").unlink()
    result = mmgr("serve", str(bundle), "--port", "1", check=False)
    assert result.returncode == 1 and "codes/text.safetensors is missing" in result.stderr
    assert "Traceback" not in result.stderr
