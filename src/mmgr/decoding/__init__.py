"""Decoding: the catalog's semantic IDs as a tensor prefix trie, and batched constrained beam search over it."""

from mmgr.decoding.beam import constrained_beam_search, reference_beam_search, sequence_log_probs
from mmgr.decoding.trie import DictTrie, PrefixTrie

__all__ = ["DictTrie", "PrefixTrie", "constrained_beam_search", "reference_beam_search", "sequence_log_probs"]
