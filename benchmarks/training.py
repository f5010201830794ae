"""TIGER-size T5 training throughput on Amazon Beauty (every prefix of every training sequence, batch 256, the
machine's precision: bf16 autocast where native), through mmgr's training loop, with the choices that make it fast
switched off one at a time in the same run: torch's own dropout and transformers' default attention (plain Hugging
Face T5), and random batches padded to their longest history instead of length-bucketed ones; and the compiled
training step (`training.graph=compile`: torch.compile of forward + backward, dynamic shapes).

    python benchmarks/training.py [--steps 20] [--warm 3] [--run RUN]

Uses runs/tiger-beauty, made (or reused) as benchmarks/tiger_beauty.py makes it: Beauty imported, text encoded,
RQ-VAE codes fitted; `--run` names another run with codes instead. Each variant trains `--steps` steps from the same
seeded initialisation on a fixed sample of the epoch's batches; samples/s counts the steady training steps (each
variant's first `--warm` steps, where the compiler works, are timed apart as `first_steps_seconds`). Writes
benchmarks/results/training-amazon-beauty-2014-tiger.json (peak memory is the process's peak resident set).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import common  # first: sets OMP_WAIT_POLICY before torch starts its thread pool
import numpy as np
import torch
from tiger_beauty import prepared
from transformers import T5ForConditionalGeneration

from mmgr.engines.method import prepare_training
from mmgr.models.seq2seq import build_t5, t5_config
from mmgr.rundir import RunDir
from mmgr.training.data import collate, encode_examples, length_batches, prefix_examples
from mmgr.training.loop import TrainData, fit, model_loss

REFERENCE = {"source": "DESIGN.md: other implementations on this machine kind (2 cores, TIGER size, Beauty, batch 256)",
             "metrics": {"genrec_bf16_samples_per_second": 54, "genrec_fp32_samples_per_second": 31.5,
                         "rq_vae_recommender_bf16_samples_per_second": 41,
                         "rq_vae_recommender_fp32_samples_per_second": 28.7}}


def padded_random_batches(count: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Batches of random examples (each padded to its longest history by `collate`)."""
    order = np.random.default_rng(seed).permutation(count)
    return [order[start:start + batch_size] for start in range(0, count, batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a run with codes (default: runs/tiger-beauty)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per variant")
    parser.add_argument("--warm", type=int, default=3, help="untimed first steps per variant (compilation)")
    args = parser.parse_args()
    wall = time.perf_counter()
    run = RunDir(args.run) if args.run else prepared()
    config = run.config()
    prep = prepare_training(run, config)   # (re)writes the run's vocabulary, as `mmgr train` would
    users, histories, targets = prefix_examples(prep.split.train, config.split.max_history)
    examples = encode_examples(prep.layout, prep.user_ids, users, histories, targets)
    batch_size = config.training.batch_size
    settings = config.training.model_copy(update={"max_steps": args.warm + args.steps, "checkpoint_every": 10**9,
                                                  "graph": "eager"})
    rng = np.random.default_rng(config.seed)

    def sample(batches: list[np.ndarray]) -> list[np.ndarray]:      # the same share of short and long batches
        return [batches[i] for i in rng.permutation(len(batches))[:args.warm + args.steps]]

    bucketed, random = sample(length_batches(examples, batch_size, config.seed, 0)), sample(
        padded_random_batches(len(examples), batch_size, config.seed))

    def plain_t5() -> torch.nn.Module:
        torch.manual_seed(config.seed)
        return T5ForConditionalGeneration(t5_config(config.model, prep.layout.vocab))

    def mmgr_t5() -> torch.nn.Module:
        return build_t5(config.model, prep.layout.vocab, config.seed)

    variants = {
        "mmgr": (mmgr_t5, bucketed, "eager"),
        "compiled": (mmgr_t5, bucketed, "compile"),
        "torch_dropout_default_attention": (plain_t5, bucketed, "eager"),
        "random_batches_padded_to_longest": (mmgr_t5, random, "eager"),
    }
    measured = {}
    for name, (make_model, batches, graph) in variants.items():
        measured[name] = measure(make_model(), batches, examples, settings.model_copy(update={"graph": graph}),
                                 args.warm)
        print(name, {k: round(v, 2) for k, v in measured[name].items()})
    ours = measured["mmgr"]["samples_per_second"]
    metrics = {"samples_per_second": ours,
               "target_tokens_per_second": measured["mmgr"]["target_tokens_per_second"],
               "compiled_samples_per_second": measured["compiled"]["samples_per_second"],
               "speedup_compiled_vs_eager": measured["compiled"]["samples_per_second"] / ours,
               "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "variants": measured,
               "speedup_vs_torch_dropout_default_attention":
                   ours / measured["torch_dropout_default_attention"]["samples_per_second"],
               "speedup_vs_random_padded_batches": ours / measured["random_batches_padded_to_longest"][
                   "samples_per_second"],
               "speedup_vs_genrec_bf16": ours / REFERENCE["metrics"]["genrec_bf16_samples_per_second"]}
    common.write_result("training", "amazon-beauty-2014", "tiger", metrics, wall_seconds=time.perf_counter() - wall,
                        config={"model": config.model.model_dump(), "training": settings.model_dump(),
                                "train_examples": len(examples), "steps_per_variant": args.steps,
                                "untimed_first_steps": args.warm,
                                "threads": torch.get_num_threads()}, reference=REFERENCE)


def measure(model: torch.nn.Module, batches: list[np.ndarray], examples, settings, warm: int) -> dict[str, float]:
    """Train on `batches` in order; time each step from one loss call to the next (the whole step; the last step,
    which has no next call, is not counted)."""
    stamps: list[float] = []

    def timed_loss(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        stamps.append(time.perf_counter())
        return model_loss(module, batch)

    data = TrainData(lambda epoch: batches, lambda index: collate(examples, index), timed_loss)
    with tempfile.TemporaryDirectory() as folder:
        result = fit(Path(folder), model, data, settings, validate=None, weights_info={}, progress=False)
    steady = batches[warm:-1]
    samples = sum(len(b) for b in steady)
    tokens = sum(int(collate(examples, b)["labels"].gt(0).sum()) for b in steady)
    seconds = stamps[-1] - stamps[warm]
    widths = [int(collate(examples, b)["attention_mask"].shape[1]) for b in batches]
    return {"samples_per_second": samples / seconds, "target_tokens_per_second": tokens / seconds,
            "first_steps_seconds": stamps[warm] - stamps[0], "mean_padded_length": float(np.mean(widths)),
            "compiled": float(result.graph == "compile")}


if __name__ == "__main__":
    main()
