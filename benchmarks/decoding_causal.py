"""Constrained decoding speed for the causal backbone, beam 20 -> top-10: mmgr's causal trie beam search (key/value
cache, continuing after the history) vs Hugging Face `generate` with a dict-trie `prefix_allowed_tokens_fn`, on the
same seeded causal model (d_model 128, 4 layers, 4 heads x 32, d_ff 1024) and the same Amazon Beauty users, fp32.

    python benchmarks/decoding_causal.py [--users 512] [--batch-size 128]

SIDs: LETTER's published 4-level table (`lcrec/Beauty.index.json`; the first item of each shared tuple is kept);
prompt = <bos> + the codes of each user's last 20 items before the test item. Speed does not depend on the weights;
agreement (same top-10 items in the same order) is checked on that model. Our search and `generate` alternate batch
by batch, so both see the same machine load. Writes benchmarks/results/decoding-amazon-beauty-2014-causal-beam20.json.
"""

from __future__ import annotations

import argparse
import time

import common  # first: sets OMP_WAIT_POLICY before torch starts its thread pool
import torch
from decoding import agreement, histories, item_codes, timed

from mmgr.config import ModelConfig
from mmgr.decoding import PrefixTrie
from mmgr.decoding.causal import causal_beam_search, left_align
from mmgr.models.causal import build_causal
from mmgr.tokenizers.codes import Vocabulary

SIZE = {"d_model": 128, "num_layers": 4, "num_heads": 4, "d_kv": 32, "d_ff": 1024, "dropout": 0.1}


def prompts(users, item_tokens, bos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """<bos> + history codes, left-padded (B, S)."""
    rows = [torch.cat([torch.tensor([bos]), torch.from_numpy(item_tokens[h].reshape(-1))]) for h in users]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    return left_align(ids, mask)


def hf_generate(model, ids, mask, trie: PrefixTrie, beam: int, top_k: int, eos: int):
    reference, start = trie.reference(), ids.shape[1]

    def allowed(batch_id: int, sequence: torch.Tensor) -> list[int]:
        return reference.allowed_tokens_reference(sequence[start:].tolist()) or [eos]

    out = model.generate(input_ids=ids, attention_mask=mask, num_beams=beam, num_return_sequences=top_k,
                         max_new_tokens=trie.depth, min_new_tokens=trie.depth, prefix_allowed_tokens_fn=allowed,
                         do_sample=False, length_penalty=0.0, early_stopping=False, output_scores=True,
                         return_dict_in_generate=True, pad_token_id=0, eos_token_id=eos)
    items = trie.lookup(out.sequences[:, start:start + trie.depth]).view(len(ids), top_k)
    return items, out.sequences_scores.view(len(ids), top_k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--beam", type=int, default=20)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wall = time.perf_counter()
    codes, kept, sizes = item_codes("drop")
    vocab = Vocabulary({"text": sizes})
    tokens = vocab.encode("text", codes)
    trie = PrefixTrie.build(torch.from_numpy(tokens[kept]), vocab_size=vocab.size)
    model = build_causal(ModelConfig(**SIZE), vocab, args.seed).eval()
    users = histories(args.users, args.history, args.seed)
    batches = [prompts(users[i:i + args.batch_size], tokens, vocab.token("<bos>"))
               for i in range(0, len(users), args.batch_size)]
    eos = vocab.token("<eos>")

    def ours(ids, mask):
        return causal_beam_search(model, ids, mask, trie, args.beam, args.top_k)

    ours(batches[0][0][:4], batches[0][1][:4])
    hf_generate(model, batches[0][0][:4], batches[0][1][:4], trie, args.beam, args.top_k, eos)
    mine, theirs = [], []
    for ids, mask in batches:
        mine.append(timed(ours, ids, mask))
        theirs.append(timed(hf_generate, model, ids, mask, trie, args.beam, args.top_k, eos))
    n = sum(len(ids) for ids, _ in batches)
    seconds, hf_seconds = sum(t for _, t in mine), sum(t for _, t in theirs)
    items, scores = (torch.cat([r[i] for r, _ in mine]) for i in (0, 1))
    hf_items, hf_scores = (torch.cat([r[i] for r, _ in theirs]) for i in (0, 1))
    agree = agreement(items, hf_items)
    metrics = {"users": n, "users_per_second": n / seconds, "hf_generate_users_per_second": n / hf_seconds,
               "speedup_vs_hf_generate": hf_seconds / seconds, "top10_set_agreement": agree["set"],
               "top10_order_agreement": agree["order"],
               "top10_max_abs_score_difference": float((scores - hf_scores).abs().max()),
               "returned_non_items": int(((items < 0) & torch.isfinite(scores)).sum()),
               "hf_generate_returned_non_items": int((hf_items < 0).sum())}
    for key, value in metrics.items():
        print(f"{key:40s} {value}")
    common.write_result("decoding", "amazon-beauty-2014", f"causal-beam{args.beam}", metrics,
                        wall_seconds=time.perf_counter() - wall,
                        config={"model": f"random-init causal (Llama blocks) {SIZE}", "vocab_size": vocab.size,
                                "sid_table": "lcrec/Beauty.index.json (LETTER, 4 levels, first item per tuple)",
                                "history_items": args.history, "beam_size": args.beam, "top_k": args.top_k,
                                "batch_size": args.batch_size, "levels": trie.depth, "items_in_trie": trie.num_items,
                                "dtype": "float32", "threads": torch.get_num_threads(),
                                "hf_generate": "num_beams=beam, num_return_sequences=top_k, max/min_new_tokens=L, "
                                               "length_penalty=0, prefix_allowed_tokens_fn=dict trie"})


if __name__ == "__main__":
    main()
