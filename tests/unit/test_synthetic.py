"""The synthetic world: deterministic, parseable, and carrying the planted signals in the right modality."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmgr.config import SyntheticConfig
from mmgr.data.synthetic import (
    COLOURS,
    PATTERNS,
    SIGNAL_KINDS,
    WorldSummary,
    generate_world,
    item_matches_taste,
)

SMALL = SyntheticConfig(n_items=60, n_users=40, image_size=32, seed=3)
# More users for the statistical checks (tiny images keep it fast).
MEDIUM = SyntheticConfig(n_items=120, n_users=240, image_size=16, seed=5)


class World:
    """A generated world read back through the csv/json modules."""

    def __init__(self, folder: Path, summary: WorldSummary) -> None:
        self.folder, self.summary = folder, summary
        self.doc: dict[str, Any] = json.loads((folder / "world.json").read_text())
        with open(folder / "items.csv", newline="") as fh:
            self.item_rows = list(csv.DictReader(fh))
        with open(folder / "interactions.csv", newline="") as fh:
            self.interaction_rows = list(csv.DictReader(fh))

    def sequences(self) -> dict[str, list[str]]:
        by_user: dict[str, list[str]] = defaultdict(list)
        for row in self.interaction_rows:
            by_user[row["user_id"]].append(row["item_id"])
        return by_user


def _make(tmp_path_factory: pytest.TempPathFactory, cfg: SyntheticConfig) -> World:
    folder = tmp_path_factory.mktemp("world")
    return World(folder, generate_world(folder, cfg))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _make(tmp_path_factory, SMALL)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _make(tmp_path_factory, MEDIUM)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- determinism


def test_same_config_writes_byte_identical_files(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", SMALL)
    generate_world(tmp_path / "b", SMALL)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(first) == SMALL.n_items + 3
    assert first == second


def test_different_seed_changes_every_kind_of_file(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", SMALL)
    generate_world(tmp_path / "b", SMALL.model_copy(update={"seed": SMALL.seed + 1}))
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    for name in ("interactions.csv", "items.csv", "world.json"):
        assert first[name] != second[name]
    assert sum(first[n] != second[n] for n in first if n.startswith("images")) > SMALL.n_items // 2


def test_no_temporary_files_are_left(small: World) -> None:
    assert not [p for p in small.folder.rglob("*") if p.name.startswith(".")]


# --- the files


def test_interactions_parse_and_timestamps_increase_per_user(small: World) -> None:
    assert list(small.interaction_rows[0]) == ["user_id", "item_id", "timestamp"]
    assert len(small.interaction_rows) == small.summary.n_interactions
    catalog = {row["item_id"] for row in small.item_rows}
    last: dict[str, int] = {}
    lengths: Counter[str] = Counter()
    for row in small.interaction_rows:
        assert row["item_id"] in catalog
        timestamp = int(row["timestamp"])
        assert timestamp > last.get(row["user_id"], -1)
        last[row["user_id"]] = timestamp
        lengths[row["user_id"]] += 1
    assert len(lengths) == SMALL.n_users
    assert all(SMALL.min_length <= n <= SMALL.max_length for n in lengths.values())


def test_items_parse_with_categories_and_image_paths(small: World) -> None:
    assert list(small.item_rows[0]) == ["item_id", "title", "description", "brand", "categories", "image"]
    assert len(small.item_rows) == SMALL.n_items == small.summary.n_items
    for row in small.item_rows:
        attributes = small.doc["items"][row["item_id"]]
        assert row["categories"].split("|")[-1] == attributes["category"]
        assert row["brand"] == attributes["brand"]
        assert row["image"] == f"images/{row['item_id']}.png"
        assert (small.folder / row["image"]).is_file()


def test_every_item_is_used(small: World) -> None:
    used = {row["item_id"] for row in small.interaction_rows}
    assert small.summary.n_unused_items == 0
    assert used == {row["item_id"] for row in small.item_rows}


# --- which information is in which modality


def test_text_names_category_brand_and_material(small: World) -> None:
    for row in small.item_rows:
        attributes = small.doc["items"][row["item_id"]]
        assert row["title"] == f"{attributes['brand']} {attributes['material']} {attributes['category']}"
        for name in ("category", "brand", "material"):
            assert attributes[name] in row["description"]


def test_text_never_names_a_colour_or_a_pattern(small: World) -> None:
    synonyms = {"striped", "dotted", "checked", "checkered", "plain", "colour", "color", "pattern", "black",
                "white"}
    forbidden = set(COLOURS) | set(PATTERNS) | synonyms
    for row in small.item_rows:
        text = " ".join(row[k] for k in ("title", "description", "brand", "categories")).lower()
        assert not set(re.findall(r"[a-z]+", text)) & forbidden, text


def test_images_decode_have_the_right_size_and_show_the_colour(small: World) -> None:
    for row in small.item_rows:
        with Image.open(small.folder / row["image"]) as image:
            image.load()
            assert image.format == "PNG"
            assert image.size == (SMALL.image_size, SMALL.image_size)
            pixels = np.asarray(image.convert("RGB"))
        colour = COLOURS[small.doc["items"][row["item_id"]]["colour"]]
        assert (pixels == colour).all(axis=-1).sum() >= 0.05 * SMALL.image_size**2


def test_same_attributes_still_give_different_images(small: World) -> None:
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for item_id, a in small.doc["items"].items():
        groups[(a["category"], a["colour"], a["pattern"])].append(item_id)
    twins = [ids for ids in groups.values() if len(ids) > 1]
    assert twins
    for ids in twins:
        contents = {(small.folder / "images" / f"{i}.png").read_bytes() for i in ids}
        assert len(contents) == len(ids)


# --- users and their planted tastes


def test_world_json_documents_every_user_and_the_modalities(small: World) -> None:
    doc = small.doc
    assert doc["seed"] == SMALL.seed and doc["signal_strength"] == SMALL.signal_strength
    assert doc["modalities"] == {"category": ["text", "image"], "brand": ["text"], "material": ["text"],
                                 "colour": ["image"], "pattern": ["image"]}
    assert set(doc["vocabularies"]) == set(doc["modalities"])
    assert len(doc["users"]) == SMALL.n_users
    kinds = Counter(user["kind"] for user in doc["users"].values())
    assert set(kinds) == set(SIGNAL_KINDS)
    assert max(kinds.values()) - min(kinds.values()) <= 1
    assert small.summary.users_per_kind == dict(kinds)
    for user in doc["users"].values():
        assert user["taste"]


def test_taste_steps_follow_the_taste(small: World) -> None:
    items = small.doc["items"]
    for user_id, sequence in small.sequences().items():
        user = small.doc["users"][user_id]
        for step in user["taste_steps"]:
            assert item_matches_taste(user["kind"], user["taste"], items[sequence[step]])


def test_each_kind_follows_its_taste_at_about_the_signal_rate(medium: World) -> None:
    items, users = medium.doc["items"], medium.doc["users"]
    hits: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    for user_id, sequence in medium.sequences().items():
        user = users[user_id]
        steps[user["kind"]] += len(sequence)
        hits[user["kind"]] += sum(item_matches_taste(user["kind"], user["taste"], items[i]) for i in sequence)
    base = {"text": 1 / 8, "image": 1 / 8, "both": 1 / 6, "synergy": 1 / 2}  # chance a random item matches
    for kind in SIGNAL_KINDS:
        expected = MEDIUM.signal_strength + (1 - MEDIUM.signal_strength) * base[kind]
        assert hits[kind] / steps[kind] == pytest.approx(expected, abs=0.06), kind


def test_synergy_users_follow_the_rule_but_neither_modality_alone_predicts(medium: World) -> None:
    items, users = medium.doc["items"], medium.doc["users"]
    rule = in_a = in_p = total = 0
    for user_id, sequence in medium.sequences().items():
        user = users[user_id]
        if user["kind"] != "synergy":
            continue
        taste = user["taste"]
        for item_id in sequence:
            attributes = items[item_id]
            rule += item_matches_taste("synergy", taste, attributes)
            in_a += attributes["material"] in taste["material_groups"][0]
            in_p += attributes["pattern"] in taste["pattern_groups"][0]
            total += 1
    assert total > 500
    expected = MEDIUM.signal_strength + (1 - MEDIUM.signal_strength) / 2
    assert rule / total == pytest.approx(expected, abs=0.05)
    assert in_a / total == pytest.approx(0.5, abs=0.07)  # material alone: no better than chance
    assert in_p / total == pytest.approx(0.5, abs=0.07)  # pattern alone: no better than chance


def test_synergy_groups_split_the_vocabularies_in_halves(small: World) -> None:
    vocab = small.doc["vocabularies"]
    for user in small.doc["users"].values():
        if user["kind"] == "synergy":
            a, b = user["taste"]["material_groups"]
            p, q = user["taste"]["pattern_groups"]
            assert sorted(a + b) == sorted(vocab["material"]) and len(a) == len(b)
            assert sorted(p + q) == sorted(vocab["pattern"]) and len(p) == len(q)


def test_full_signal_makes_every_step_a_taste_step(tmp_path_factory: pytest.TempPathFactory) -> None:
    world = _make(tmp_path_factory, SMALL.model_copy(update={"signal_strength": 1.0, "image_size": 16}))
    items = world.doc["items"]
    for user_id, sequence in world.sequences().items():
        user = world.doc["users"][user_id]
        assert user["taste_steps"] == list(range(len(sequence)))
        assert all(item_matches_taste(user["kind"], user["taste"], items[i]) for i in sequence)


def test_unknown_signal_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown signal kind"):
        item_matches_taste("smell", {}, {"brand": "Norvik"})
