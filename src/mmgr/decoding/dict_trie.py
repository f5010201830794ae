"""`DictTrie`: the readable pure-Python reference of `PrefixTrie` (nested dicts), used in tests and as Hugging Face
`generate`'s `prefix_allowed_tokens_fn`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from torch import Tensor

from mmgr.decoding.trie_storage import NO_NODE


class DictTrie:
    """Readable reference trie: nested dicts token -> subtree, an item's index stored under the key None."""

    def __init__(self, item_tokens: Iterable[Sequence[int]]):
        self.root: dict = {}
        for index, tokens in enumerate(item_tokens):
            node = self.root
            for token in tokens:
                node = node.setdefault(int(token), {})
            node[None] = index

    def _walk(self, prefix: Sequence[int]) -> dict | None:
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return None
        return node

    def allowed_tokens_reference(self, prefix: Sequence[int]) -> list[int]:
        """Sorted tokens that extend `prefix` towards an item ([] for unknown or complete prefixes)."""
        node = self._walk(prefix)
        return sorted(t for t in node if t is not None) if node else []

    def item(self, tokens: Sequence[int]) -> int:
        """Item index of a full token tuple, -1 if it is not an item."""
        node = self._walk(tokens)
        return node.get(None, NO_NODE) if node else NO_NODE

    def prefix_allowed_tokens_fn(self, decoder_start_token_id: int = 0,
                                 dead_end_token_id: int = 2) -> Callable[[int, Tensor], list[int]]:
        """`prefix_allowed_tokens_fn` for Hugging Face `generate` on an encoder-decoder: the decoder sequence starts
        with the decoder start token. Transformers rejects empty lists, so a prefix that is not in the trie (a beam
        that already has a -inf score) may only continue with `dead_end_token_id` (eos)."""

        def allowed(batch_id: int, sequence: Tensor) -> list[int]:
            tokens = sequence.tolist()
            if tokens and tokens[0] == decoder_start_token_id:
                tokens = tokens[1:]
            return self.allowed_tokens_reference(tokens) or [dead_end_token_id]

        return allowed
