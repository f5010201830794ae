"""Helpers shared by the test modules (no test module imports another): the `mmgr` command as a user runs it, the
tiny settings of end-to-end runs, small prepared worlds of the contract tests."""

from __future__ import annotations

import csv
import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

import mmgr.training.loop as loop
from mmgr.config import ModelConfig, TrainingConfig, load_config
from mmgr.data.importer import import_into_run
from mmgr.data.splits import leave_one_out
from mmgr.decoding.trie import PrefixTrie
from mmgr.engines.method import settings_of
from mmgr.errors import MmgrError
from mmgr.inference.prepared import Prepared
from mmgr.layouts import LAYOUTS
from mmgr.models.seq2seq import build_t5
from mmgr.objectives.base import ALIGNMENTS, OBJECTIVES, Objective
from mmgr.objectives.tasks import Task
from mmgr.rundir import RunDir
from mmgr.serving.launch import start_server, stop_server
from mmgr.tokenizers.codes import ModalityCodes, Vocabulary
from mmgr.tokenizers.words import used_words
from mmgr.training.data import EncodedExamples


def mmgr(*args: str, check: bool = True, process: bool = False) -> subprocess.CompletedProcess:
    """`mmgr ARGS` through the CLI's own entry point (`mmgr.cli.app.main`), its exit code, stdout and stderr
    captured. It runs in this test process unless `process`: a new interpreter pays about 10 s of CPU importing
    torch, transformers and lightning, most of an end-to-end test's time. `process=True` starts a real `mmgr`
    process, for what only a process shows: warnings printed once per process, locks held between processes, the
    environment it inherits, a kill. `mmgr serve` always runs as a process: a start that should be refused and is
    not would serve, and wait, inside the test."""
    process = process or args[:1] == ("serve",)
    result = (subprocess.run([sys.executable, "-m", "mmgr", *args], capture_output=True, text=True, timeout=300)
              if process else _in_this_process(args))
    if check and result.returncode != 0:
        raise AssertionError(f"mmgr {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _in_this_process(args: tuple[str, ...]) -> subprocess.CompletedProcess:
    """`main()` as `python -m mmgr ARGS` runs it, with sys.argv, stdout and stderr swapped for the call; an
    exception that would end the process is its traceback on stderr and exit code 1, as Python prints it."""
    import contextlib
    import logging
    import traceback

    from mmgr.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("mmgr")
    handlers, level, argv = list(logger.handlers), logger.level, sys.argv
    sys.argv = ["mmgr", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as stop:
                code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
            except Exception:   # noqa: BLE001 - a process would print it and exit 1
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
        logger.handlers[:] = handlers
        logger.setLevel(level)
    return subprocess.CompletedProcess(["mmgr", *args], code, out.getvalue(), err.getvalue())


TINY = ["data.format=synthetic", "data.synthetic.n_items=40", "data.synthetic.n_users=30",
        "data.synthetic.image_size=32", "tokenizer.method=rq-kmeans", "tokenizer.levels=2",
        "tokenizer.codebook_size=4", "model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1",
        "model.num_heads=2", "model.d_kv=16", "model.d_ff=64", "model.user_buckets=0", "training.epochs=2",
        "training.alignment.epochs=1", "training.batch_size=64", "training.precision=32-true"]


def run_args(recipe: str, run, cache) -> list[str]:
    return ["run", "--recipe", f"configs/{recipe}.yaml", "--out", str(run), "--no-progress",
            f"encoders.cache_dir={cache}", *TINY]


N = 30


LAYOUT_OF = {"syngr": "bimodal", "mql4grec": "unimodal", "syngr-released": "unimodal-wide"}  # (others: late fusion)


def registered(name: str) -> Objective:
    return (ALIGNMENTS if name in ALIGNMENTS.names() else OBJECTIVES).get(name)


def item_texts(config) -> dict[str, list[str | None]]:
    """Titles, interest tags and visual descriptions for the text objectives (some items lack some)."""
    fields = {f for name in config.training.tmt.tasks for f in Task.parse(name).fields}
    values = {"title": [f"movie number {i}" for i in range(N)],
              "interests": [f"likes {'comedy' if i % 2 else 'drama'}; era {i % 3}" if i % 4 else None
                            for i in range(N)],
              "visdesc": [f"a poster in {'red' if i % 3 else 'blue'}" if i >= 3 else None for i in range(N)],
              "description": [None] * N}
    return {f: values[f] for f in fields}


def prepared(objective: str, kind: str | None = None) -> tuple[Prepared, object]:
    """A tiny prepared run for `objective` on backbone `kind` (default: the first that trains it)."""
    layout_name = LAYOUT_OF.get(objective, "late-fusion")
    config = load_config(overrides=[f"model.layout={layout_name}", "model.modalities=[text,image]",
                                    f"model.kind={kind or (registered(objective).backbones or ('t5',))[0]}",
                                    "model.switch_tokens=true", "model.d_model=16", "model.num_layers=1",
                                    "model.num_decoder_layers=1", "model.num_heads=2", "model.d_kv=8",
                                    "model.d_ff=32", "model.user_buckets=0", "training.batch_size=8",
                                    "split.max_history=4"])
    rng = np.random.default_rng(0)
    grid = np.array([(a, b) for a in range(6) for b in range(6)])
    text = ModalityCodes("text", grid[rng.permutation(36)[:N]], [6, 6], np.zeros(N, dtype=bool))
    image = ModalityCodes("image", np.stack([np.arange(N) % 5, np.arange(N) // 5, np.zeros(N, dtype=int)], 1),
                          [5, 6, 1], np.arange(N) < 3)                      # 3-level image SIDs, 3 items lack one
    codes = {"text": text, "image": image}
    tasks = LAYOUTS.get(layout_name).tasks(["text", "image"]) + registered(objective).tasks(["text", "image"])
    fields = registered(objective).text_fields(settings_of(config, registered(objective)))
    texts = item_texts(config) if fields else {}
    words = used_words(config.model.words, [t for values in texts.values() for t in values if t])
    vocab = Vocabulary({m: list(c.with_missing_reserved().sizes) for m, c in codes.items()}, tasks, 0, words,
                       config.model.words if words else "")
    layout = LAYOUTS.get(layout_name).build(codes, vocab, config.model, 4)
    sequences = [rng.integers(0, N, size=int(rng.integers(4, 9))) for _ in range(20)]
    prep = Prepared(None, [f"u{i}" for i in range(20)], leave_one_out(sequences, 4), codes, layout,
                    {name: PrefixTrie.build(torch.from_numpy(tokens), vocab_size=vocab.size)
                     for name, tokens in layout.targets.items()}, texts)
    return prep, config


LEVELS = ((5, 13), (13, 21), (21, 29), (29, 33))   # token window [low, high) of each level


def make_items(depth: int = 3, n: int = 50, seed: int = 0) -> torch.Tensor:
    """Unique random tuples sharing prefixes, plus first tokens with only one (12) and two (11) completions."""
    g = torch.Generator().manual_seed(seed)
    columns = [torch.randint(5, 11, (n,), generator=g)]
    columns += [torch.randint(low, high, (n,), generator=g) for low, high in LEVELS[1:depth]]
    items = torch.unique(torch.stack(columns, dim=1), dim=0)
    rare = torch.tensor([[11, 13, 21, 29], [11, 14, 22, 30], [12, 15, 23, 31]])[:, :depth]
    items = torch.cat([items, rare])
    return items[torch.randperm(len(items), generator=g)]


def histories(batch: int = 5, seed: int = 1, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token histories of different lengths, right- (or left-) padded with 0."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 10, (batch,), generator=g)
    lengths[0] = 10
    ids = torch.zeros(batch, 10, dtype=torch.int64)
    mask = torch.zeros(batch, 10, dtype=torch.int64)
    for row, length in enumerate(lengths.tolist()):
        span = slice(10 - length, 10) if left else slice(0, length)
        ids[row, span] = torch.randint(5, 33, (length,), generator=g)
        mask[row, span] = 1
    return ids, mask


N_ITEMS, N_USERS, CYCLES = 60, 240, 4
SMALL_T5 = ["model.d_model=64", "model.num_layers=2", "model.num_decoder_layers=2", "model.num_heads=4",
            "model.d_kv=16", "model.d_ff=128", "model.dropout=0.0", "model.user_buckets=0",
            "training.batch_size=64", "training.lr=0.005", "training.warmup_steps=10", "training.weight_decay=0.0",
            "training.precision=32-true", "training.accelerator=cpu", "training.eval_users=0",
            "training.patience=100", "split.max_history=4", "decoding.beam_size=10", "decoding.top_k=10"]


def successor_table() -> np.ndarray:
    """successor[i]: the item after i (the catalog split into `CYCLES` random cycles)."""
    order = np.random.default_rng(0).permutation(N_ITEMS)
    successor = np.empty(N_ITEMS, dtype=np.int64)
    for cycle in np.array_split(order, CYCLES):
        successor[cycle] = np.roll(cycle, -1)
    return successor


def write_successor_world(folder: Path, titles: list[str]) -> Path:
    """interactions.csv (each user walks the successor cycles from a random item) and items.csv with `titles`."""
    successor, rng = successor_table(), np.random.default_rng(1)
    rows = [["user_id", "item_id", "timestamp"]]
    for user in range(N_USERS):
        item = int(rng.integers(N_ITEMS))
        for t in range(int(rng.integers(5, 9))):
            rows.append([f"u{user}", f"i{item:02d}", t])
            item = int(successor[item])
    with open(folder / "interactions.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with open(folder / "items.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["item_id", "title"], *([f"i{i:02d}", title] for i, title in enumerate(titles))])
    return folder


def write_codes(run: RunDir, missing_images: int = 0) -> None:
    """Arbitrary distinct 2-level text and image SIDs (8 x 8 codes), independent of each other."""
    fingerprint = run.manifest()["dataset"]["fingerprint"]
    grid = np.array([(a, b) for a in range(8) for b in range(8)])
    for seed, modality in enumerate(("text", "image")):
        codes = grid[np.random.default_rng(10 + seed).permutation(64)[:N_ITEMS]]
        missing = np.zeros(N_ITEMS, dtype=bool)
        if modality == "image":
            missing[:missing_images] = True
        ModalityCodes(modality, codes, [8, 8], missing).save(run.path / "codes" / f"{modality}.safetensors",
                                                             fingerprint)


def trained_run(world: Path, out: Path, extra: list[str], missing_images: int = 0) -> tuple[RunDir, dict]:
    """A run of the successor `world` at `out` (`SMALL_T5` and `extra` settings, `write_codes` SIDs), trained:
    (run, training summary)."""
    from mmgr.engines.base import train_run

    config = load_config(overrides=["data.format=generic", f"data.path={world}", *SMALL_T5, *extra])
    run, _, _ = import_into_run(config, out)
    write_codes(run, missing_images)
    return run, train_run(run, run.config(), progress=False)


VOCAB = Vocabulary({"text": [8, 8]})                   # the toy training world: two 8-code levels
TOY_MODEL = ModelConfig(d_model=16, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8, d_ff=32, user_buckets=0)


def toy_examples(n: int = 96) -> EncodedExamples:
    rng = np.random.default_rng(0)
    base = len(VOCAB.specials)
    inputs = [rng.integers(base, VOCAB.size, size=rng.integers(2, 9)) for _ in range(n)]
    labels = np.stack([[base + int(x[0]) % 8, base + 8 + int(x[-1]) % 8] for x in inputs])
    return EncodedExamples(inputs, labels, np.zeros(n, dtype=np.int64), np.arange(n))


def settings(**changes) -> TrainingConfig:
    return TrainingConfig(**{"epochs": 3, "batch_size": 16, "lr": 3e-3, "warmup_steps": 2, "precision": "32-true",
                             "accelerator": "cpu", "checkpoint_every": 4, "patience": 10, **changes})


def scored(*values: float, key: str = "ndcg@10"):
    """A validation giving `key` these values in turn (after the last, the last again)."""
    queue = list(values)
    return lambda model: {key: queue.pop(0) if len(queue) > 1 else queue[0]}


def train(folder, validate=scored(0.0), **changes):
    model = build_t5(TOY_MODEL, VOCAB, seed=0)
    data = loop.bucketed_train_data(toy_examples(), 16, seed=1)
    result = loop.fit(folder, model, data, settings(**changes), validate=validate, weights_info={}, progress=False)
    return model, result


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_tiny_lm(folder: Path, arch: str, seed: int = 0) -> Path:
    """A tiny random causal LM of architecture `arch` with MiniLM's tokenizer, saved as a transformers folder."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    from mmgr.encoders.text import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(seed)
    if arch == "llama":       # untied output layer: the appended tokens get output rows of their own
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          head_dim=8, tie_word_embeddings=False))
    else:                     # tied, scaled embeddings, a sliding-window layer narrower than the prompts
        lm = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                                head_dim=8, sliding_window=4,
                                                layer_types=["sliding_attention", "full_attention"]))
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def items_table(**columns):
    n = len(next(iter(columns.values())))
    base = {"item_id": [str(i) for i in range(n)], "title": [""] * n, "description": [""] * n, "brand": [""] * n,
            "categories": [[] for _ in range(n)], "image": [None] * n, "has_text": [True] * n,
            "has_image": [False] * n}
    return pa.table({**base, **columns})


def solid(path, colour, size=(80, 60)):
    Image.new("RGB", size, colour).save(path)
    return str(path)


def text_only_run(folder: Path):
    with open(folder / "interactions.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["user_id", "item_id", "timestamp"],
                                  *([f"u{u}", f"i{(u + t) % 9}", t] for u in range(12) for t in range(4))])
    with open(folder / "items.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["item_id", "title"], *([f"i{i}", f"item {i}"] for i in range(9))])
    config = load_config(overrides=["data.format=generic", f"data.path={folder}"])
    run, dataset, _ = import_into_run(config, folder / "run")
    return run, dataset


# serving: a real `mmgr serve` on 127.0.0.1 and what tests send it

def start(run, *options: str, env: dict | None = None, log=None):
    return start_server(run, options, env, log=log)


def refusal(run, *options: str, env: dict | None = None) -> str:
    """The error of a `mmgr serve` that refuses to start (a server that starts is stopped, and the test fails)."""
    with pytest.raises(MmgrError) as refused:
        process, _ = start(run, *options, env=env)
        stop_server(process)
    return str(refused.value)


def copy_run(trained, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("serving"))
    return run


def png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with (almost) no pixel data: under 80 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def picture(shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(out, format="PNG")
    return out.getvalue()



def ids(rows: list[dict]) -> list[str]:
    return [row["item_id"] for row in rows]


def batch_count(url: str) -> float:
    line = next(x for x in httpx.get(f"{url}/metrics").text.splitlines() if x.startswith("mmgr_batch_size_count"))
    return float(line.split()[-1])



def onboard(url: str, item_id: str, title: str, **extra):
    files = {"image": ("x.png", extra.pop("image"), "image/png")} if "image" in extra else None
    return httpx.post(f"{url}/items", data={"item_id": item_id, "title": title, **extra}, files=files, timeout=60)

