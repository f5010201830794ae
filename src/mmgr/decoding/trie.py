"""The catalog's semantic IDs as a prefix trie, built once into tensors for constrained decoding.

Every item is a unique tuple of L token ids. Node ids number the distinct prefixes, depth by depth: the root is 0, then
the prefixes of length 1, 2, ... L (the leaves, one per item). Internal node `n` at depth `d` has one row of
`children`, a dense table over the token window `[window_start[d], window_start[d] + window_size[d])` of that depth
(the code tokens of level d are contiguous in `mmgr.tokenizers.codes.Vocabulary`): `children[n, t - window_start[d]]`
is the child reached by token `t`, or -1. A last all -1 row stands for "no node" (id -1, a leaf, or out of range), so
every lookup is a plain gather with no Python walk at decode time.

A trie with onboarded items (`borrowing`) also marks, at the collision levels, the children that only onboarded
items reach: the search scores such a child as its parent's best child that a catalog item reaches (see
`borrowed`).

Memory: (internal nodes + 1) x (widest window) int32 values; Amazon Beauty (12k items, 4 levels of 256 codes) is about
20k x 256 x 4 B = 20 MB.

`DictTrie` is the readable pure-Python reference (nested dicts), used in tests and as Hugging Face `generate`'s
`prefix_allowed_tokens_fn`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

NO_NODE = -1


@dataclass(frozen=True)
class PrefixTrie:
    """Prefix trie of item token tuples as tensors (see the module docstring for the layout)."""

    item_tokens: Tensor        # (N, L) int64: token ids of each item
    children: Tensor           # (num_internal + 1, W) int32: child node id per (node, token - window start), or -1
    node_window: Tensor        # (num_internal + 1,) int64: first token id of the window of each internal node
    depth_start: tuple[int, ...]   # (L + 2,): first node id of each depth 0..L, then the number of nodes
    window_start: tuple[int, ...]  # (L,): first token id allowed at each depth
    window_size: tuple[int, ...]   # (L,): width of the token window of each depth
    leaf_item: Tensor          # (num_nodes,) int64: item index of a leaf node, -1 for internal nodes
    vocab_size: int            # width of the masks `allowed_mask` returns (>= largest token id + 1)
    borrow: Tensor | None = None        # like `children`, bool: the child borrows its best catalog sibling's score
    borrow_depths: tuple[int, ...] = ()  # the depths where some child does

    @classmethod
    def build(cls, item_tokens: Tensor, vocab_size: int | None = None) -> PrefixTrie:
        """Trie of `item_tokens` (N, L) (unique rows of non-negative token ids; row i is item i)."""
        items = torch.as_tensor(item_tokens).detach().to("cpu", torch.int64)
        _check_items(items)
        num_items, depth = items.shape
        top = int(items.max()) + 1
        vocab_size = top if vocab_size is None else vocab_size
        if vocab_size < top:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the largest item token + 1 ({top})")

        node_of, depth_start = _number_prefixes(items)                  # (N, L + 1), (L + 2,)
        lows = items.min(dim=0).values                                   # (L,)
        sizes = items.max(dim=0).values - lows + 1                       # (L,)
        num_internal = depth_start[depth]
        children = torch.full((num_internal + 1, int(sizes.max())), NO_NODE, dtype=torch.int32)
        node_window = torch.zeros(num_internal + 1, dtype=torch.int64)
        for d in range(depth):
            children[node_of[:, d], items[:, d] - lows[d]] = node_of[:, d + 1].to(torch.int32)
            node_window[depth_start[d]:depth_start[d + 1]] = lows[d]
        leaf_item = torch.full((depth_start[-1],), NO_NODE, dtype=torch.int64)
        leaf_item[node_of[:, depth]] = torch.arange(num_items)
        return cls(items, children, node_window, tuple(depth_start), tuple(lows.tolist()), tuple(sizes.tolist()),
                   leaf_item, vocab_size)

    # ---- sizes ---------------------------------------------------------------------------------------------------

    @property
    def num_items(self) -> int:
        return self.item_tokens.shape[0]

    @property
    def depth(self) -> int:
        """L: tokens per item."""
        return self.item_tokens.shape[1]

    @property
    def num_nodes(self) -> int:
        return self.depth_start[-1]

    @property
    def num_internal(self) -> int:
        return self.depth_start[self.depth]

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (self.item_tokens, self.children, self.node_window,
                                                           self.leaf_item))

    @property
    def device(self) -> torch.device:
        return self.children.device

    def to(self, device: torch.device | str) -> PrefixTrie:
        """The same trie with its tensors on `device`."""
        move = {name: getattr(self, name).to(device) for name in ("item_tokens", "children", "node_window",
                                                                   "leaf_item")}
        borrow = self.borrow.to(device) if self.borrow is not None else None
        return PrefixTrie(**move, depth_start=self.depth_start, window_start=self.window_start,
                          window_size=self.window_size, vocab_size=self.vocab_size, borrow=borrow,
                          borrow_depths=self.borrow_depths)

    # ---- onboarded items -----------------------------------------------------------------------------------------

    def borrowing(self, catalog: int, depths: Sequence[int]) -> PrefixTrie:
        """This trie where, at each of `depths` (collision levels), a child that only items from row `catalog` on
        reach (onboarded items: never a training target) is scored by the search as its parent's best child that a
        catalog item reaches. A collision code only tells apart items with one semantic ID; the model gives a code
        it never saw under that ID almost no probability, which would bury every onboarded item that shares a
        catalog item's semantic ID."""
        borrow = torch.zeros(self.children.shape, dtype=torch.bool)
        items = self.item_tokens.cpu()
        nodes = torch.zeros(len(items), dtype=torch.int64)
        trie = self.to("cpu")
        for depth in range(self.depth):
            child = trie.step(nodes, items[:, depth])
            if depth in depths:
                known = torch.zeros(self.num_nodes, dtype=torch.bool)
                known[child[:catalog]] = True
                new = ~known[child]
                borrow[nodes[new], items[new, depth] - trie.node_window[nodes[new]]] = True
            nodes = child
        return replace(trie, borrow=borrow, borrow_depths=tuple(d for d in depths if d < self.depth)).to(self.device)

    def borrowed(self, nodes: Tensor, depth: int, log_probs: Tensor, children: Tensor) -> Tensor:
        """`log_probs` (R, W) of the children of `nodes` (R,) at `depth`, a borrowing child's replaced by the best
        of its catalog siblings' (kept when it has none)."""
        if depth not in self.borrow_depths or self.borrow is None:
            return log_probs
        borrow = self.borrow[self._rows(nodes), :self.window_size[depth]]       # (R, W)
        catalog = (children >= 0) & ~borrow
        best = log_probs.masked_fill(~catalog, float("-inf")).amax(dim=1, keepdim=True)   # (R, 1)
        return torch.where(borrow & torch.isfinite(best), best, log_probs)

    # ---- tensor lookups (no Python loop over nodes) --------------------------------------------------------------

    def _rows(self, nodes: Tensor) -> Tensor:
        """Row of `children` per node: itself if internal, else the all -1 sentinel row."""
        internal = (nodes >= 0) & (nodes < self.num_internal)
        return torch.where(internal, nodes, self.num_internal)

    def allowed_mask(self, nodes: Tensor) -> Tensor:
        """(B,) node ids -> (B, V) bool: the tokens that extend each prefix (all False for leaves and -1)."""
        rows = self._rows(nodes)                                          # (B,)
        allowed = self.children[rows] >= 0                                # (B, W)
        width = allowed.shape[1]
        columns = self.node_window[rows, None] + torch.arange(width, device=nodes.device)  # (B, W)
        mask = torch.zeros(len(nodes), self.vocab_size + width, dtype=torch.bool, device=nodes.device)
        return mask.scatter_(1, columns, allowed)[:, :self.vocab_size]    # (B, V)

    def step(self, nodes: Tensor, tokens: Tensor) -> Tensor:
        """Child of each node through each token (same shapes), -1 where that token does not extend the prefix."""
        rows = self._rows(nodes)
        offset = tokens - self.node_window[rows]
        inside = (offset >= 0) & (offset < self.children.shape[1])
        child = self.children[rows, offset.clamp(0, self.children.shape[1] - 1)].long()
        return torch.where(inside, child, NO_NODE)

    def children_window(self, nodes: Tensor, depth: int) -> Tensor:
        """(R,) nodes of depth `depth` -> (R, window_size[depth]) int64 children over that depth's token window."""
        return self.children[self._rows(nodes), :self.window_size[depth]].long()

    def items_of(self, nodes: Tensor) -> Tensor:
        """Item index of each leaf node, -1 for anything else (internal nodes, -1)."""
        inside = (nodes >= 0) & (nodes < self.num_nodes)
        return torch.where(inside, self.leaf_item[nodes.clamp(0, self.num_nodes - 1)], NO_NODE)

    def lookup(self, tokens: Tensor) -> Tensor:
        """(..., L) token tuples -> (...) item indices, -1 for tuples that are not items."""
        nodes = torch.zeros(tokens.shape[:-1], dtype=torch.int64, device=tokens.device)
        for d in range(self.depth):
            nodes = self.step(nodes, tokens[..., d])
        return self.items_of(nodes)

    def tokens_of(self, items: Tensor, fill: int = 0) -> Tensor:
        """(...) item indices -> (..., L) token ids; `fill` for -1 (padding) entries."""
        known = items >= 0
        tokens = self.item_tokens[items.clamp(min=0)]
        return torch.where(known[..., None], tokens, fill)

    def reference(self) -> DictTrie:
        """The pure-Python dict trie of the same items."""
        return DictTrie(self.item_tokens.tolist())


def _check_items(items: Tensor) -> None:
    if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
        raise ValueError(f"item_tokens must be a non-empty (N, L) tensor, got shape {tuple(items.shape)}")
    if int(items.min()) < 0:
        raise ValueError("item_tokens must be non-negative token ids")
    distinct = torch.unique(items, dim=0).shape[0]
    if distinct != items.shape[0]:
        raise ValueError(f"{items.shape[0] - distinct} items share a token tuple with another item; resolve "
                         "collisions first (mmgr.tokenizers.collisions)")


def _number_prefixes(items: Tensor) -> tuple[Tensor, list[int]]:
    """Node id of every item's prefix at each depth (N, L + 1), and the first node id of each depth."""
    num_items, depth = items.shape
    node_of = torch.zeros(num_items, depth + 1, dtype=torch.int64)      # depth 0: the root, node 0
    depth_start = [0, 1]
    for d in range(1, depth + 1):
        _, inverse = torch.unique(items[:, :d], dim=0, return_inverse=True)
        node_of[:, d] = inverse + depth_start[d]
        depth_start.append(depth_start[d] + int(inverse.max()) + 1)
    return node_of, depth_start


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
