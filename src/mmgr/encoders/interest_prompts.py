"""MDIM interest prompts: how an item is shown to the language model (completion and chat templates with worked
examples), how an answer is parsed into tags, and the contract every interest-mining backend keeps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from mmgr.errors import MmgrError

PROMPT_VERSION = "mdim-v1"  # bump when the prompts, examples or decoding rules change: it is in the cache key
TITLE_CHARS, DESCRIPTION_CHARS, MAX_CATEGORIES = 200, 300, 6
MAX_TAG_WORDS, MAX_TAG_CHARS = 6, 60
RETRY_TEMPERATURE, RETRY_TOP_K = 0.7, 40

# Worked examples for the few-shot prompt: (item prompt, answer). Their tags name the buyer's motivation rather than
# the product and vary by item; captions follow the offline describer's format, and one item has none, as some
# items have no image. Tuned on Amazon Scientific items with gemma-3-270m.
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("Product: Heavy Duty Duct Tape, 2 Inch x 60 Yards, 3 Rolls\n"
     "Brand: Gorilla\n"
     "Categories: Industrial & Scientific > Tapes, Adhesives & Sealants > Tapes > Duct Tape\n"
     "Description: Thick adhesive and a reinforced backing that hold on rough, uneven surfaces indoors and out.\n"
     "Image: Looks like: toilet tissue (34%), Band Aid (22%), buckle (7%). Mostly grey and silver.",
     "quick household fixes; weekend handyman; emergency preparedness"),
    ("Product: Women's Trail Running Shoes, Waterproof\n"
     "Brand: Salomon\n"
     "Categories: Clothing, Shoes & Jewelry > Women > Shoes > Athletic > Running\n"
     "Description: Grippy outsole and a waterproof membrane for muddy trails and rainy morning runs.\n"
     "Image: Looks like: running shoe (88%), sandal (4%), clog (2%). Mostly blue and grey.",
     "outdoor fitness; trail adventures; active lifestyle; all-weather training"),
    ("Product: Nitrile Exam Gloves, Powder-Free, Box of 100\n"
     "Brand: Medline\n"
     "Categories: Industrial & Scientific > Lab & Scientific Products > Gloves\n"
     "Description: Latex-free disposable gloves with textured fingertips for medical exams, food handling and "
     "cleaning.",
     "hygiene-minded caregiving; safe food handling; clean workspace habits"),
    ("Product: Borosilicate Glass Beaker Set, 5 Sizes 50-1000 ml\n"
     "Brand: Eisco\n"
     "Categories: Industrial & Scientific > Lab & Scientific Products > Lab Supplies > Beakers\n"
     "Description: Heat-resistant graduated beakers for measuring, mixing and heating liquids in school and home "
     "labs.\n"
     "Image: Looks like: beaker (71%), measuring cup (12%), water jug (3%). Mostly white.",
     "home chemistry experiments; science education; careful measurement"),
)
FEW_SHOT_HEADER = ("Shoppers' latent interests, inferred from what they buy. Each product below is followed by 2-4 "
                   "short interest tags: the lifestyle, hobby, need or motivation behind the purchase, not the "
                   "product itself.\n\n")
CHAT_SYSTEM = ("You infer the latent interests of online shoppers from the products they buy. Reply with the tags "
               "only.")


# --------------------------------------------------------------------------------------------------- prompts


def item_prompt(row: dict[str, Any], caption: str | None = None) -> str | None:
    """The item as the model reads it (title, brand, categories, shortened description, image caption); None
    when the item has neither text nor caption."""
    lines = []
    for label, value in (("Product", _clip(row.get("title"), TITLE_CHARS)), ("Brand", _clip(row.get("brand"), 80)),
                         ("Categories", " > ".join(_clean(c) for c in (row.get("categories") or [])[:MAX_CATEGORIES]
                                                   if _clean(c))),
                         ("Description", _clip(row.get("description"), DESCRIPTION_CHARS)),
                         ("Image", _clip(caption, DESCRIPTION_CHARS))):
        if value:
            lines.append(f"{label}: {value}")
    if not any(line.startswith(("Product:", "Description:", "Image:")) for line in lines):
        return None
    return "\n".join(lines)


def item_prompts(items: pa.Table, captions: Sequence[str | None] | None = None) -> list[str | None]:
    """`item_prompt` for every row of an items table (captions aligned with the rows, or None)."""
    if captions is not None and len(captions) != items.num_rows:
        raise MmgrError(f"got {len(captions)} captions for {items.num_rows} items")
    rows = items.select([c for c in ("title", "brand", "categories", "description") if c in items.column_names])
    return [item_prompt(row, captions[i] if captions is not None else None)
            for i, row in enumerate(rows.to_pylist())]


def few_shot_prefix(examples: Sequence[tuple[str, str]] = FEW_SHOT) -> str:
    """The part of the completion prompt shared by every item: the header and the worked examples."""
    return FEW_SHOT_HEADER + "".join(f"{text}\nInterests: {answer}\n\n" for text, answer in examples)


def few_shot_prompt(item: str, examples: Sequence[tuple[str, str]] = FEW_SHOT) -> str:
    """The whole completion prompt: worked examples, then `item` and 'Interests:' for the model to continue."""
    return f"{few_shot_prefix(examples)}{item}\nInterests:"


def chat_messages(item: str, min_tags: int = 2, max_tags: int = 4) -> list[dict[str, Any]]:
    """An instruction prompt for chat models."""
    ask = (f"{item}\n\nWrite {min_tags}-{max_tags} short latent interest tags (2-5 words each) describing the "
           "lifestyle, need or motivation of a shopper who would buy this product, e.g. 'productivity-focused "
           "lifestyle' or 'eco-conscious home'. Answer with one line of tags separated by semicolons and nothing "
           "else.")
    return [{"role": "system", "content": CHAT_SYSTEM}, {"role": "user", "content": ask}]


def _clean(value: Any) -> str:
    """Text without HTML tags and with collapsed whitespace."""
    if value is None:
        return ""
    return " ".join(re.sub(r"<[^>]{0,200}>", " ", str(value)).split())


def _clip(value: Any, limit: int) -> str:
    """`_clean(value)` cut at a word boundary near `limit` characters (with '...')."""
    text = _clean(value)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:.-") + "..."


# --------------------------------------------------------------------------------------------------- parsing

_LABEL = re.compile(r"^\W*(?:latent\s+)?(?:interests?|tags?)\s*:\s*", re.IGNORECASE)
_BULLET_LINE = re.compile(r"^\s*(?:[-*\u2022\u00b7]|\(?\d{1,2}[.)])\s+")
_SPLIT = re.compile(r"[;,|\u2022\u00b7\n]")
_MARKER = re.compile(r"^\s*(?:[-*#>]+|\(?\d{1,2}[.):](?!\d))\s*")
_STRIP = " \t\"'`\u201c\u201d\u2018\u2019*_.:!?()[]{}-"


def parse_tags(text: str, min_tags: int = 2, max_tags: int = 4) -> list[str] | None:
    """Tags from a model answer, or None when fewer than `min_tags` valid ones are found.

    Reads the first non-empty line (after an optional 'Interests:' label; a line ending in ':' is a preamble) split
    on ';' ',' '|' and bullets, plus any bulleted or numbered lines right after it (a list answer). Tags are
    stripped of quotes, punctuation and numbering and lowercased; empty tags, tags without letters and tags over 6
    words or 60 characters are dropped; duplicates are dropped keeping the first; at most `max_tags` are kept.
    """
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    first = _LABEL.sub("", lines[0])
    if first.rstrip().endswith(":") and len(lines) > 1:  # a preamble ("Here are the tags:") before a list
        first = ""
    pieces = _SPLIT.split(first)
    for line in lines[1:]:
        if not _BULLET_LINE.match(line):
            break
        pieces.extend(_SPLIT.split(line))
    tags: list[str] = []
    for piece in pieces:
        tag = _clean_tag(piece)
        if tag and tag not in tags:
            tags.append(tag)
    tags = tags[:max_tags]
    return tags if len(tags) >= min_tags else None


def _clean_tag(piece: str) -> str | None:
    """One tag normalised, or None when it is not a usable tag."""
    tag = _MARKER.sub("", piece.strip()).strip(_STRIP)
    tag = " ".join(tag.lower().split())
    if not tag or not re.search(r"[^\W\d_]", tag):
        return None
    if len(tag) > MAX_TAG_CHARS or len(tag.split()) > MAX_TAG_WORDS:
        return None
    return tag


# --------------------------------------------------------------------------------------------------- miners


class InterestMiner:
    """Turns item prompts (from `item_prompt`) into raw answers; each backend wraps them in its own template.

    `model_id` and `version` (the prompt template) are part of the cache key. `generate(prompts, attempt)` returns
    one raw answer per prompt: attempt 0 decodes greedily, later attempts (retries of invalid answers) sample.
    `generated_tokens` counts generated tokens so far where the backend knows them.
    """

    model_id: str = "unknown"
    version: str = PROMPT_VERSION
    generated_tokens: int = 0

    def load(self) -> None:
        """Get ready to generate (load weights); called before the first timed batch. A no-op by default."""

    def generate(self, prompts: list[str], attempt: int = 0) -> list[str]:
        """One raw answer per item prompt."""
        raise NotImplementedError
