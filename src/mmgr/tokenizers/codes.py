"""Item codes of one modality and the shared token vocabulary.

`ModalityCodes` holds `codes` int64[N, L] (unique per item after collision handling), the size of each level
(the extra disambiguation level included) and the items whose modality was missing. `Vocabulary` gives each
(modality, level, code) its own token id after reserved special tokens: pad, bos, eos, unk, the modality switch, mask,
task prompts and hashed user buckets; objectives that read and write text add a block of subword tokens last (the
pieces of a subword vocabulary that the catalog's texts use, `mmgr.tokenizers.words`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmgr.errors import MmgrError
from mmgr.io import read_arrays, write_arrays_atomic, write_json_atomic

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<switch>", "<mask>")


@dataclass
class ModalityCodes:
    modality: str
    codes: np.ndarray            # (N, L) int64
    sizes: list[int]             # codebook size per level (the extra level's capacity included)
    missing: np.ndarray          # (N,) bool: items without this modality (their codes are placeholders)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def appended(self) -> bool:
        """Whether the last level is an appended collision level (not content)."""
        return self.info.get("collisions") == "append"

    def save(self, path: Path, fingerprint: str) -> None:
        metadata = {"modality": self.modality, "sizes": json.dumps(self.sizes), "dataset_fingerprint": fingerprint,
                    "info": json.dumps(self.info)}
        write_arrays_atomic(path, {"codes": self.codes.astype(np.int64), "missing": self.missing.astype(np.uint8)},
                            metadata)

    @classmethod
    def load(cls, path: Path, fingerprint: str | None = None) -> ModalityCodes:
        arrays, meta = read_arrays(path, fingerprint, "no codes; run `mmgr tokenize` first")
        return cls(meta["modality"], arrays["codes"], json.loads(meta["sizes"]), arrays["missing"].astype(bool),
                   json.loads(meta.get("info", "{}")))

    def with_row(self, code: np.ndarray, missing: bool) -> ModalityCodes:
        """These codes with one more item (an onboarded one) at the end."""
        return ModalityCodes(self.modality, np.vstack([self.codes, np.asarray(code, dtype=np.int64)[None]]),
                             list(self.sizes), np.append(self.missing, missing), self.info)

    def with_missing_reserved(self, always: bool = False) -> ModalityCodes:
        """The missing-modality policy: an item without this modality gets a reserved "missing" code (one past the
        codebook) at every level but the last, and at the last level its rank among the missing items, so its
        tuple says "unknown" instead of borrowing a real item's codes, and stays unique (decodable). With `always`,
        the sizes hold the reserved code even when no item misses the modality (a multimodal run's vocabulary: an
        item onboarded later without it must fit)."""
        if not self.missing.any() and (not always or self.codes.shape[1] < 2):
            return self
        if self.codes.shape[1] < 2:
            raise MmgrError(f"{self.modality}: items without this modality need at least 2 code levels")
        codes, sizes = self.codes.copy(), list(self.sizes)
        count = int(self.missing.sum())
        codes[self.missing, :-1] = sizes[:-1]
        codes[self.missing, -1] = np.arange(count)
        sizes = [s + 1 for s in sizes[:-1]] + [max(sizes[-1], count)]
        return ModalityCodes(self.modality, codes, sizes, self.missing.copy(),
                             {**self.info, "missing_policy": "reserved code per level + rank at the last level"})


@dataclass(frozen=True)
class Vocabulary:
    """Token ids: specials, task prompts, user buckets, then one block per (modality, level), modalities in the
    order of `levels` (the recipe's order). One vocabulary per run: `mmgr train` builds it and saves it as
    `vocabulary.json` in the run; evaluation, decoding and serving read that file."""

    levels: dict[str, list[int]]          # modality -> sizes per level
    tasks: tuple[str, ...] = ()
    user_buckets: int = 0
    words: tuple[int, ...] = ()           # ids (in `word_model`'s own vocabulary) of the subword tokens, in order
    word_model: str = ""                  # the subword tokenizer those ids belong to

    @property
    def specials(self) -> list[str]:
        return [*SPECIALS, *(f"<task:{t}>" for t in self.tasks)]

    def offsets(self, modality: str) -> list[int]:
        start = len(self.specials) + self.user_buckets
        for name, sizes in self.levels.items():
            if name == modality:
                return [start + sum(sizes[:level]) for level in range(len(sizes))]
            start += sum(sizes)
        raise MmgrError(f"modality {modality!r} is not in the vocabulary ({', '.join(self.levels)})")

    @property
    def word_offset(self) -> int:
        """Token id of the first subword token (they follow the code blocks)."""
        return len(self.specials) + self.user_buckets + sum(sum(s) for s in self.levels.values())

    @property
    def size(self) -> int:
        return self.word_offset + len(self.words)

    def token(self, name: str) -> int:
        return self.specials.index(name)

    def user_token(self, user_id: str) -> int:
        """Hashed user bucket token (stable across runs and machines)."""
        if not self.user_buckets:
            raise MmgrError("this vocabulary has no user buckets")

        bucket = int.from_bytes(hashlib.sha256(user_id.encode()).digest()[:8], "little") % self.user_buckets
        return len(self.specials) + bucket

    def encode(self, modality: str, codes: np.ndarray) -> np.ndarray:
        """int64[N, L] codes -> int64[N, L] token ids."""
        sizes = self.levels[modality]
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape[1] != len(sizes) or (codes < 0).any() or (codes >= np.array(sizes)).any():
            raise MmgrError(f"codes of shape {codes.shape} do not fit the {modality} vocabulary {sizes}")
        return codes + np.array(self.offsets(modality), dtype=np.int64)

    def modality_ids(self) -> np.ndarray:
        """int64[V]: for each token id, the index of its modality in `levels` order (-1 for specials and users)."""
        ids = np.full(self.size, -1, dtype=np.int64)
        for index, (modality, sizes) in enumerate(self.levels.items()):
            start = self.offsets(modality)[0]
            ids[start:start + sum(sizes)] = index
        return ids

    def task_token(self, task: str) -> int:
        if task not in self.tasks:
            raise MmgrError(f"task {task!r} is not in the vocabulary ({', '.join(self.tasks) or 'no tasks'})")
        return self.token(f"<task:{task}>")

    def decode(self, token: int) -> tuple[str, int, int]:
        """Token id -> (modality, level, code)."""
        for modality, sizes in self.levels.items():
            for level, offset in enumerate(self.offsets(modality)):
                if offset <= token < offset + sizes[level]:
                    return modality, level, token - offset
        raise MmgrError(f"token {token} is not a code token")

    def to_json(self) -> dict[str, Any]:
        text = {"words": list(self.words), "word_model": self.word_model} if self.words else {}
        return {"levels": self.levels, "tasks": list(self.tasks), "user_buckets": self.user_buckets, **text,
                "size": self.size}

    def digest(self) -> str:
        """sha256 of the canonical JSON: what a trained model records of the vocabulary it was trained with."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        return cls({k: list(v) for k, v in data["levels"].items()}, tuple(data["tasks"]), data["user_buckets"],
                   tuple(data.get("words", ())), data.get("word_model", ""))
