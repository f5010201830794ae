"""Interaction filters; each counts what it removes into a `Problems` report."""

from __future__ import annotations

from collections import Counter

from mmgr.data.problems import Problems

Sequences = dict[str, list[tuple[int | None, str]]]


def drop_repeats(sequences: Sequences, problems: Problems) -> Sequences:
    """Keep the first interaction of each (user, item) pair."""
    out: Sequences = {}
    removed = 0
    for user, seq in sequences.items():
        seen: set[str] = set()
        kept = [(ts, item) for ts, item in seq if not (item in seen or seen.add(item))]
        removed += len(seq) - len(kept)
        out[user] = kept
    if removed:
        problems.add("repeated (user, item) interactions (dropped by data.dedup)", count=removed)
    return out


def kcore_filter(sequences: Sequences, k: int, problems: Problems) -> Sequences:
    """Iteratively drop users and items with fewer than k interactions until both hold."""
    users_before = len(sequences)
    items_before = len({item for seq in sequences.values() for _, item in seq})
    inter_before = sum(len(seq) for seq in sequences.values())
    while True:
        item_counts = Counter(item for seq in sequences.values() for _, item in seq)
        kept = {u: [e for e in seq if item_counts[e[1]] >= k] for u, seq in sequences.items()}
        kept = {u: seq for u, seq in kept.items() if len(seq) >= k}
        if sum(map(len, kept.values())) == sum(map(len, sequences.values())):
            break
        sequences = kept
    items_after = len({item for seq in sequences.values() for _, item in seq})
    if users_before - len(sequences):
        problems.add(f"users dropped by {k}-core filter", count=users_before - len(sequences))
    if items_before - items_after:
        problems.add(f"items dropped by {k}-core filter", count=items_before - items_after)
    removed = inter_before - sum(len(seq) for seq in sequences.values())
    if removed:
        problems.add(f"interactions dropped by {k}-core filter", count=removed)
    return sequences
