"""Constrained decoding speed, beam 20 -> top-10: mmgr's batched trie beam search vs Hugging Face `generate` with a
dict-trie `prefix_allowed_tokens_fn`, on the same TIGER-size T5 and the same real Amazon Beauty users, in one run.

    python benchmarks/decoding.py [--run runs/tiger-beauty] [--users 1024] [--batch-size 256] [--skip-hf]

Model: the trained TIGER model of `--run` (written by benchmarks/tiger_beauty.py: its RQ-VAE codes, 3 levels + a
collision level = 4 tokens per item, its layout with the hashed user token, test-time histories of random users,
seeded). Without a trained run it falls back to a seeded random-init TIGER-size T5 over the published LETTER SID table
(4 levels; `--collisions drop` keeps the first item of each shared tuple, `append` adds a 5th level); speed does not
depend on the weights, agreement is then checked on that model. Our search and `generate` alternate batch by batch,
so both see the same machine load. Writes benchmarks/results/decoding-amazon-beauty-2014-tiger-beam20.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common  # first: sets OMP_WAIT_POLICY before torch starts its thread pool
import numpy as np
import torch
from transformers import T5Config, T5ForConditionalGeneration

from mmgr.data.formats.p5 import read_p5
from mmgr.decoding import PrefixTrie, constrained_beam_search
from mmgr.tokenizers.codes import Vocabulary
from mmgr.tokenizers.collisions import append_level
from mmgr.tokenizers.external import read_index

DATA = common.SHARED_DATA / "amazon-beauty-2014"
ROOT = Path(__file__).resolve().parents[1]
NUM_ITEMS = 12101
TIGER = {"d_model": 128, "num_layers": 4, "num_decoder_layers": 4, "num_heads": 6, "d_kv": 64, "d_ff": 1024,
         "dropout_rate": 0.1}


def item_codes(collisions: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(codes (12101, L) of every catalog item, the catalog rows the trie holds, codebook sizes per level)."""
    codes = read_index(DATA / "lcrec" / "Beauty.index.json", [str(i) for i in range(NUM_ITEMS)])
    sizes = [int(codes[:, level].max()) + 1 for level in range(codes.shape[1])]
    if collisions == "append":
        codes, extra = append_level(codes, capacity=sizes[-1])
        return codes, np.arange(len(codes)), [*sizes, extra]
    _, first = np.unique(codes, axis=0, return_index=True)                 # first item of each distinct tuple
    return codes, np.sort(first), sizes


def histories(users: int, history: int, seed: int) -> list[np.ndarray]:
    """Last `history` items before the test item of `users` users drawn at random (seeded)."""
    sequences = read_p5(Path(DATA)).build().item_sequences()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(sequences), size=min(users, len(sequences)), replace=False)
    return [sequences[u][:-1][-history:] for u in chosen]


def encode_histories(batch: list[np.ndarray], item_tokens: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Item histories -> right-padded token ids and attention mask (B, S)."""
    rows = [item_tokens[h].reshape(-1) for h in batch]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    mask = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.from_numpy(row)
        mask[i, :len(row)] = 1
    return ids, mask


def trained_setup(run_path: Path, users: int, batch_size: int, seed: int):
    """(model, trie, batches, description) of a trained TIGER run: test histories of `users` random users."""
    from mmgr.inference.generative import load_model
    from mmgr.inference.prepared import load_prepared
    from mmgr.layouts.base import pad_batch
    from mmgr.rundir import RunDir

    run = RunDir(run_path)
    config = run.config()
    prep = load_prepared(run, config)
    model = load_model(run, config, prep, device="cpu")
    test = prep.split.test
    chosen = np.random.default_rng(seed).choice(len(test), size=min(users, len(test)), replace=False)
    rows = [prep.layout.encoder_tokens(prep.user_ids[test.users[i]], test.histories[i]) for i in chosen.tolist()]
    batches = [pad_batch(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    return model, prep.tries["item"], batches, {
        "model": f"trained TIGER ({run_path.name}/model.safetensors)", **config.model.model_dump(),
        "vocab_size": prep.layout.vocab.size, "sid_table": f"{run_path.name}/codes (mmgr RQ-VAE + collision level)",
        "histories": "test-time histories (<= 20 items) with the hashed user token"}


def random_setup(args) -> tuple:
    """(model, trie, batches, description): random-init TIGER-size T5 over the published LETTER table."""
    codes, kept, sizes = item_codes(args.collisions)
    vocab = Vocabulary({"text": sizes})
    history_tokens = vocab.encode("text", codes)                            # (12101, L) tokens of every catalog item
    trie = PrefixTrie.build(torch.from_numpy(history_tokens[kept]), vocab_size=vocab.size)
    users = histories(args.users, args.history, args.seed)
    batches = [encode_histories(users[i:i + args.batch_size], history_tokens)
               for i in range(0, len(users), args.batch_size)]
    return tiger_t5(vocab.size, args.seed), trie, batches, {
        "model": "random-init TIGER-size T5 (no trained run found)", **TIGER, "vocab_size": vocab.size,
        "collisions": args.collisions, "history_items": args.history,
        "sid_table": "lcrec/Beauty.index.json (LETTER, 4 levels)"}


def tiger_t5(vocab_size: int, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, pad_token_id=0, decoder_start_token_id=0, eos_token_id=2, **TIGER)
    return T5ForConditionalGeneration(config).eval()


def hf_generate(model, ids, mask, trie: PrefixTrie, fn, beam: int, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face beam search; sequences mapped to item rows (-1 for non-items), raw sums of log-probs."""
    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beam, num_return_sequences=top_k,
                         max_new_tokens=trie.depth, prefix_allowed_tokens_fn=fn, do_sample=False, length_penalty=0.0,
                         early_stopping=False, output_scores=True, return_dict_in_generate=True)
    sequences = out.sequences[:, 1:]                                        # drop the decoder start token
    if sequences.shape[1] < trie.depth:                                     # every beam stopped early at eos
        sequences = torch.nn.functional.pad(sequences, (0, trie.depth - sequences.shape[1]))
    items = trie.lookup(sequences[:, :trie.depth]).view(len(ids), top_k)
    return items, out.sequences_scores.view(len(ids), top_k)


def agreement(ours: torch.Tensor, theirs: torch.Tensor) -> dict[str, float]:
    same_set = [set(a) == set(b) for a, b in zip(ours.tolist(), theirs.tolist(), strict=True)]
    same_order = (ours == theirs).all(dim=1)
    return {"set": float(np.mean(same_set)), "order": float(same_order.float().mean())}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "tiger-beauty",
                        help="a trained TIGER run directory (falls back to a random-init model without one)")
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=64, help="users per decoding chunk of our search")
    parser.add_argument("--collisions", choices=["drop", "append"], default="drop")
    parser.add_argument("--skip-hf", action="store_true", help="only time our search")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wall = time.perf_counter()

    trained = (args.run / "model.safetensors").is_file()
    model, trie, batches, described = (trained_setup(args.run, args.users, args.batch_size, args.seed) if trained
                                       else random_setup(args))
    allowed = trie.reference().prefix_allowed_tokens_fn(model.config.decoder_start_token_id,
                                                        model.config.eos_token_id)

    def ours(ids, mask, dtype=None, decoder="auto"):
        return constrained_beam_search(model, ids, mask, trie, args.beam, args.top_k, chunk_size=args.chunk_size,
                                       decoder=decoder, autocast_dtype=dtype)

    warm_ids, warm_mask = batches[0][0][:8], batches[0][1][:8]
    ours(warm_ids, warm_mask)
    if not args.skip_hf:
        hf_generate(model, warm_ids, warm_mask, trie, allowed, args.beam, args.top_k)
    # main comparison, interleaved batch by batch so both see the same machine load
    mine, theirs = [], []
    for ids, mask in batches:
        mine.append(timed(ours, ids, mask))
        if not args.skip_hf:
            theirs.append(timed(hf_generate, model, ids, mask, trie, allowed, args.beam, args.top_k))
    seconds = sum(t for _, t in mine)
    items, scores = (torch.cat([r[i] for r, _ in mine]) for i in (0, 1))
    n = sum(len(ids) for ids, _ in batches)
    metrics = {"users": n, "users_per_second": n / seconds}
    if not args.skip_hf:
        hf_seconds = sum(t for _, t in theirs)
        hf_items, hf_scores = (torch.cat([r[i] for r, _ in theirs]) for i in (0, 1))
        agree = agreement(items, hf_items)
        metrics |= {"hf_generate_users_per_second": n / hf_seconds, "speedup_vs_hf_generate": hf_seconds / seconds,
                    "top10_set_agreement": agree["set"], "top10_order_agreement": agree["order"],
                    "top10_max_abs_score_difference": float((scores - hf_scores).abs().max()),
                    "hf_generate_returned_non_items": int((hf_items < 0).sum())}
    metrics["returned_non_items"] = int(((items < 0) & torch.isfinite(scores)).sum())
    # variants: our search through the generic Hugging Face cache path, and under bf16 autocast
    hf_path = [timed(ours, ids, mask, None, "hf") for ids, mask in batches]
    bf16 = [timed(ours, ids, mask, torch.bfloat16) for ids, mask in batches]
    hf_path_items, bf16_items = (torch.cat([r[0] for r, _ in runs]) for runs in (hf_path, bf16))
    metrics |= {"hf_cache_path_users_per_second": n / sum(t for _, t in hf_path),
                "hf_cache_path_top10_order_agreement": agreement(items, hf_path_items)["order"],
                "bf16_users_per_second": n / sum(t for _, t in bf16),
                "bf16_top10_set_agreement_vs_fp32": agreement(items, bf16_items)["set"],
                "bf16_top10_order_agreement_vs_fp32": agreement(items, bf16_items)["order"]}
    for key, value in metrics.items():
        print(f"{key:40s} {value}")
    common.write_result(
        "decoding", "amazon-beauty-2014", f"tiger-beam{args.beam}", metrics, wall_seconds=time.perf_counter() - wall,
        config={**described, "beam_size": args.beam, "top_k": args.top_k, "batch_size": args.batch_size,
                "chunk_size": args.chunk_size, "levels": trie.depth, "items_in_trie": trie.num_items,
                "history_padding": "right", "dtype": "float32", "decoder": "t5 (folded cross-attention)",
                "hf_generate": "num_beams=beam, num_return_sequences=top_k, max_new_tokens=L, length_penalty=0, "
                               "prefix_allowed_tokens_fn=dict trie (DictTrie)",
                "threads": torch.get_num_threads(),
                "batch_seconds": [round(t, 3) for _, t in mine],
                "hf_generate_batch_seconds": [round(t, 3) for _, t in theirs]})


if __name__ == "__main__":
    main()
