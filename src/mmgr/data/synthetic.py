"""The built-in synthetic multimodal world: a small catalog and user histories with *planted* structure.

It is the default data of `mmgr quickstart` and of the fast tests. `generate_world` writes raw files in mmgr's
generic format, so the normal generic reader imports them:

    interactions.csv   user_id,item_id,timestamp          (timestamps strictly increase within a user)
    items.csv          item_id,title,description,brand,categories,image   (categories are `|`-separated)
    images/<id>.png    one square picture per item
    world.json         the planted structure: vocabularies, item attributes, each user's signal kind and taste

Each item draws five attributes independently (balanced draws: every value is used about equally often).
Which modality shows which attribute is the point of the world:

    attribute  values                                          text  image
    category   mug lamp backpack sneaker watch chair            yes   yes  (named in the text; sets the shape:
                                                                           circle triangle square star hexagon
                                                                           diamond)
    brand      8 invented names (Norvik, Altamo, ...)           yes   no
    material   cotton steel oak leather ceramic glass           yes   no
    colour     red orange yellow green teal blue purple pink    no    yes  (fill colour of the shape)
    pattern    solid stripes dots checks                        no    yes  (drawn inside the shape)

The text never names a colour or a pattern and the image never shows a brand or a material. Images carry small
seeded noise (background tint, shape position and size, pattern phase), so two items with the same attributes
still differ.

Users are split evenly over four signal kinds (user i has kind `SIGNAL_KINDS[i % 4]`); the taste is what a
user's sequence follows:

    text     likes one brand                 -> only the text can explain the user
    image    likes one colour                -> only the image can explain the user
    both     likes one category              -> either modality explains the user
    synergy  likes items with (material in A and pattern in P) or (material in B and pattern in Q), where A/B
             split the materials and P/Q split the patterns in halves -> neither material nor pattern alone
             predicts the user's items; only text and image together do

A sequence has a length drawn uniformly from [min_length, max_length]. At each step, with probability
`signal_strength`, the user picks uniformly among the items matching the taste; otherwise a uniformly random
item (noise). Items already in the sequence are avoided while others remain. Afterwards, items no one picked
are swapped into noise steps (or into taste steps of users whose taste they match), so the whole catalog is
used where the interactions allow it; `WorldSummary.n_unused_items` counts what is left.

Everything is seeded by `SyntheticConfig.seed` alone: the same config writes byte-identical files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmgr.config import SyntheticConfig
from mmgr.data.synthetic_images import CATEGORY_SHAPES, COLOURS, PATTERNS, render_image
from mmgr.io import write_bytes_atomic, write_json_atomic

WORLD_FORMAT_VERSION = 1

CATEGORIES = ("mug", "lamp", "backpack", "sneaker", "watch", "chair")
CATEGORY_DEPARTMENTS = {
    "mug": "Kitchen", "lamp": "Home", "backpack": "Bags",
    "sneaker": "Shoes", "watch": "Accessories", "chair": "Furniture",
}
BRANDS = ("Norvik", "Altamo", "Brisa", "Kestrel", "Lumora", "Quillon", "Tovana", "Zephyra")
MATERIALS = ("cotton", "steel", "oak", "leather", "ceramic", "glass")

ATTRIBUTES = ("category", "brand", "material", "colour", "pattern")
MODALITIES = {
    "category": ["text", "image"],
    "brand": ["text"],
    "material": ["text"],
    "colour": ["image"],
    "pattern": ["image"],
}
SIGNAL_KINDS = ("text", "image", "both", "synergy")
SIGNAL_KIND_DOCS = {
    "text": "likes one brand (visible in the text only)",
    "image": "likes one colour (visible in the image only)",
    "both": "likes one category (visible in both text and image)",
    "synergy": "likes (material in material_groups[0] and pattern in pattern_groups[0]) or (material in "
               "material_groups[1] and pattern in pattern_groups[1]); neither material (text) nor pattern "
               "(image) alone predicts the user's items",
}

_TEMPLATES = (
    "A {material} {category} from {brand} that {filler}.",
    "{brand} presents this {category}, crafted in {material}; it {filler}.",
    "This {material} {category} by {brand} {filler}.",
    "Made of {material}, the {brand} {category} {filler}.",
)
# Irrelevant filler: names no colour, no pattern and no other attribute.
_FILLERS = (
    "ships in recyclable packaging",
    "comes with a two-year warranty",
    "is easy to care for",
    "makes a thoughtful gift",
    "suits everyday use",
    "was made in a small workshop",
    "is popular with returning customers",
    "arrives within a week",
)
_BASE_TIMESTAMP = 1_600_000_000
_DAY = 86_400

Attributes = dict[str, str]


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote: counts and paths."""

    folder: Path
    interactions: Path
    items: Path
    images: Path
    world: Path
    n_items: int
    n_users: int
    n_interactions: int
    n_unused_items: int
    users_per_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _User:
    user_id: str
    kind: str
    taste: dict[str, Any]
    items: list[int] = field(default_factory=list)
    taste_steps: list[bool] = field(default_factory=list)


def generate_world(folder: Path, cfg: SyntheticConfig) -> WorldSummary:
    """Generate the synthetic world described by `cfg` into `folder` (see the module docstring).

    Each file is written atomically; `world.json` is written last, so a folder holding it holds a whole world.
    """
    folder = Path(folder)
    # one random stream per stage, so changing one stage leaves the others' draws as they were
    streams = np.random.default_rng(_seed(cfg.seed)).spawn(6)
    items_rng, text_rng, image_rng, users_rng, steps_rng, time_rng = streams
    items = draw_items(cfg.n_items, items_rng)
    item_ids = _ids("i", cfg.n_items)
    users = _draw_users(cfg.n_users, users_rng)
    _draw_sequences(users, items, cfg, steps_rng)
    unused = _cover_catalog(users, items, steps_rng)

    for item_id, attributes in zip(item_ids, items, strict=True):
        image = render_image(attributes, cfg.image_size, image_rng)
        write_bytes_atomic(folder / "images" / f"{item_id}.png", image)
    write_bytes_atomic(folder / "items.csv", _items_csv(item_ids, items, text_rng))
    write_bytes_atomic(folder / "interactions.csv", _interactions_csv(users, item_ids, time_rng))
    write_json_atomic(folder / "world.json", _world_doc(cfg, item_ids, items, users, unused))

    return WorldSummary(
        folder=folder, interactions=folder / "interactions.csv", items=folder / "items.csv",
        images=folder / "images", world=folder / "world.json",
        n_items=cfg.n_items, n_users=cfg.n_users, n_interactions=sum(len(u.items) for u in users),
        n_unused_items=len(unused),
        users_per_kind={kind: sum(u.kind == kind for u in users) for kind in SIGNAL_KINDS},
    )


def item_matches_taste(kind: str, taste: dict[str, Any], item: Attributes) -> bool:
    """Whether an item (its attributes) satisfies a user's planted taste (as stored in world.json)."""
    if kind == "text":
        return item["brand"] == taste["brand"]
    if kind == "image":
        return item["colour"] == taste["colour"]
    if kind == "both":
        return item["category"] == taste["category"]
    if kind == "synergy":
        groups = zip(taste["material_groups"], taste["pattern_groups"], strict=True)
        return any(item["material"] in materials and item["pattern"] in patterns
                   for materials, patterns in groups)
    raise ValueError(f"unknown signal kind {kind!r}; expected one of {', '.join(SIGNAL_KINDS)}")


# --- items and users


def draw_items(n_items: int, rng: np.random.Generator) -> list[Attributes]:
    """Each attribute drawn independently of the others, each value used about equally often."""
    vocabularies = _vocabularies()
    columns = {name: _balanced(vocabularies[name], n_items, rng) for name in ATTRIBUTES}
    return [{name: columns[name][i] for name in ATTRIBUTES} for i in range(n_items)]


def _draw_users(n_users: int, rng: np.random.Generator) -> list[_User]:
    """Kinds cycle evenly; within a kind, tastes are balanced draws over that kind's vocabulary."""
    ids = _ids("u", n_users)
    kinds = [SIGNAL_KINDS[i % len(SIGNAL_KINDS)] for i in range(n_users)]
    tastes: dict[str, list[dict[str, Any]]] = {}
    for kind in SIGNAL_KINDS:
        count = kinds.count(kind)
        if kind == "text":
            tastes[kind] = [{"brand": b} for b in _balanced(BRANDS, count, rng)]
        elif kind == "image":
            tastes[kind] = [{"colour": c} for c in _balanced(tuple(COLOURS), count, rng)]
        elif kind == "both":
            tastes[kind] = [{"category": c} for c in _balanced(CATEGORIES, count, rng)]
        else:
            tastes[kind] = [_synergy_taste(rng) for _ in range(count)]
    users = []
    for user_id, kind in zip(ids, kinds, strict=True):
        users.append(_User(user_id, kind, tastes[kind].pop(0)))
    return users


def _synergy_taste(rng: np.random.Generator) -> dict[str, Any]:
    """Random halves A/B of the materials and P/Q of the patterns; liked: (A and P) or (B and Q)."""
    materials = [str(m) for m in rng.permutation(MATERIALS)]
    patterns = [str(p) for p in rng.permutation(PATTERNS)]
    half_m, half_p = len(materials) // 2, len(patterns) // 2
    return {
        "material_groups": [sorted(materials[:half_m]), sorted(materials[half_m:])],
        "pattern_groups": [sorted(patterns[:half_p]), sorted(patterns[half_p:])],
    }


# --- sequences


def _draw_sequences(users: list[_User], items: list[Attributes], cfg: SyntheticConfig,
                    rng: np.random.Generator) -> None:
    """Fill each user's item list: taste steps with probability signal_strength, uniform noise otherwise."""
    low, high = sorted((cfg.min_length, cfg.max_length))
    everything = np.arange(len(items))
    for user in users:
        liked = np.flatnonzero([item_matches_taste(user.kind, user.taste, item) for item in items])
        seen = np.zeros(len(items), dtype=bool)
        for _ in range(int(rng.integers(low, high + 1))):
            follows = bool(rng.random() < cfg.signal_strength) and liked.size > 0
            pool = liked if follows else everything
            fresh = pool[~seen[pool]]
            choice = int(rng.choice(fresh if fresh.size else pool))
            seen[choice] = True
            user.items.append(choice)
            user.taste_steps.append(follows)


def _cover_catalog(users: list[_User], items: list[Attributes], rng: np.random.Generator) -> list[int]:
    """Swap never-picked items into steps whose item is picked elsewhere too; return what stays unused.

    Noise steps are used first (any item fits them); then taste steps of users whose taste the item matches,
    so every step keeps its meaning. Returns the indices of items still unused.
    """
    counts = np.zeros(len(items), dtype=int)
    for user in users:
        np.add.at(counts, user.items, 1)
    slots = [(u, s) for u, user in enumerate(users) for s in range(len(user.items))]
    order = rng.permutation(len(slots))
    noise = [slots[i] for i in order if not users[slots[i][0]].taste_steps[slots[i][1]]]
    taste = [slots[i] for i in order if users[slots[i][0]].taste_steps[slots[i][1]]]
    unused = []
    for item in map(int, np.flatnonzero(counts == 0)):
        def likes(user: _User, attributes: Attributes = items[item]) -> bool:
            return item_matches_taste(user.kind, user.taste, attributes)

        slot = _free_slot(noise, item, users, counts) or _free_slot(taste, item, users, counts, likes)
        if slot is None:
            unused.append(item)
            continue
        u, s = slot
        counts[users[u].items[s]] -= 1
        counts[item] += 1
        users[u].items[s] = item
    return unused


def _free_slot(slots: list[tuple[int, int]], item: int, users: list[_User], counts: np.ndarray,
               accepts: Callable[[_User], bool] | None = None) -> tuple[int, int] | None:
    """Remove and return the first slot whose current item is used elsewhere and whose user lacks `item`."""
    for position, (u, s) in enumerate(slots):
        user = users[u]
        if counts[user.items[s]] >= 2 and item not in user.items and (accepts is None or accepts(user)):
            return slots.pop(position)
    return None


# --- text


def item_text(attributes: Attributes, rng: np.random.Generator) -> tuple[str, str]:
    """Title ("Norvik steel lamp") and a one-sentence description; never names a colour or a pattern."""
    title = f"{attributes['brand']} {attributes['material']} {attributes['category']}"
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    filler = _FILLERS[int(rng.integers(len(_FILLERS)))]
    description = template.format(brand=attributes["brand"], material=attributes["material"],
                                  category=attributes["category"], filler=filler)
    return title, description[0].upper() + description[1:]


def _items_csv(item_ids: list[str], items: list[Attributes], rng: np.random.Generator) -> bytes:
    rows = []
    for item_id, attributes in zip(item_ids, items, strict=True):
        title, description = item_text(attributes, rng)
        categories = f"{CATEGORY_DEPARTMENTS[attributes['category']]}|{attributes['category']}"
        rows.append([item_id, title, description, attributes["brand"], categories, f"images/{item_id}.png"])
    return _csv_bytes(["item_id", "title", "description", "brand", "categories", "image"], rows)


def _interactions_csv(users: list[_User], item_ids: list[str], rng: np.random.Generator) -> bytes:
    """One row per step; user offsets (< 1 day) keep users apart, steps are one day apart."""
    rows = []
    for user in users:
        offset = int(rng.integers(_DAY))
        for step, item in enumerate(user.items):
            rows.append([user.user_id, item_ids[item], _BASE_TIMESTAMP + offset + step * _DAY])
    return _csv_bytes(["user_id", "item_id", "timestamp"], rows)


def _csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


# --- world.json


def _world_doc(cfg: SyntheticConfig, item_ids: list[str], items: list[Attributes], users: list[_User],
               unused: list[int]) -> dict[str, Any]:
    """The documentation of the planted structure, for measuring what a method uses."""
    return {
        "format_version": WORLD_FORMAT_VERSION,
        "generator": "mmgr.data.synthetic",
        "seed": cfg.seed,
        "signal_strength": cfg.signal_strength,
        "config": cfg.model_dump(),
        "vocabularies": {
            "category": list(CATEGORIES), "brand": list(BRANDS), "material": list(MATERIALS),
            "colour": {name: list(rgb) for name, rgb in COLOURS.items()}, "pattern": list(PATTERNS),
        },
        "modalities": MODALITIES,
        "category_shapes": CATEGORY_SHAPES,
        "signal_kinds": SIGNAL_KIND_DOCS,
        "items": dict(zip(item_ids, items, strict=True)),
        "unused_items": [item_ids[i] for i in unused],
        "users": {
            user.user_id: {
                "kind": user.kind,
                "taste": user.taste,
                "taste_steps": [step for step, follows in enumerate(user.taste_steps) if follows],
            }
            for user in users
        },
    }


# --- helpers


def _vocabularies() -> dict[str, tuple[str, ...]]:
    return {"category": CATEGORIES, "brand": BRANDS, "material": MATERIALS, "colour": tuple(COLOURS),
            "pattern": PATTERNS}


def _balanced(values: tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    """n draws in which every value appears floor(n/k) or ceil(n/k) times, in random order."""
    if n == 0:
        return []
    extra = [str(v) for v in rng.permutation(values)[: n % len(values)]]
    pool = list(values) * (n // len(values)) + extra
    return [pool[i] for i in rng.permutation(n)]


def _ids(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _seed(seed: int) -> int:
    """numpy seeds must be non-negative; map negative seeds to distinct non-negative ones."""
    return seed % (1 << 64)
