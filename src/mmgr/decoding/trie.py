"""The catalog's semantic IDs as a prefix trie, built once into tensors for constrained decoding, and extended in
place when items are added.

Every item is a unique tuple of L token ids. Internal nodes (prefixes of length 0 .. L-1) have ids from 0: the root,
then, at build, the prefixes depth by depth (sorted), then the nodes that added items create, in turn. The leaf of
item i is node `LEAF + i`. Each internal node `n` owns a row of the flat `children` table, `rows[n] = (start, first
token, width)`: `children[start + t - first]` is the child reached by token `t` (for `first <= t < first + width`),
or -1. The code tokens of level d are contiguous in `mmgr.tokenizers.codes.Vocabulary`, so a depth's tokens lie in
one window `[window_start[d], window_start[d] + window_size[d])`, the slice of the logits the search reads. At a
*dense* depth every row spans the whole window (the codebook levels, where nodes use most codes), so a node's
children over the window are one contiguous read; elsewhere a row spans only its own children's tokens (a node whose
children are collision codes 0..k-1 costs k cells, however wide the largest collision group makes the window), and a
read masks the cells outside the row. Every lookup is a gather, with no Python walk at decode time.

Memory: one int32 cell per (node, token of its row) plus 3 int64 per internal node, with 1/8 spare capacity. A
depth is dense when that costs at most `DENSE_RATIO` times its compact rows. (A dense (nodes x widest window) table
of 1M items whose largest collision group is 820 needs 2.4 GB; this layout 132 MB, spare capacity included.)

Adding items (`extended`) writes into the spare capacity of the same buffers (a row that must grow is copied to the
end of the table; a full table is copied into a larger one, with the row table whose moved rows point into it), so
onboarding an item costs O(L), not a rebuild. Every trie sharing buffers still reads exactly its own items: a cell
counts as a child only when it names one of the trie's own nodes (internal id < its `num_internal`, or the leaf of
an item < its `num_items`); cells are only written from -1, and rows only grow (a depth stays dense for a trie while
its window is the trie's). Only the newest trie of buffers writes in place; extending an older one first copies the
buffers without the cells it does not own. Writes are not synchronised with reads: a caller that shares tries
between threads runs `extended` apart from searches (the Recommender holds its lock for both).

A trie with onboarded items (`borrowing`, or `extended` with `borrow_depths`) also marks, at the given depths,
the children that only onboarded items reach: the search scores such a child as its parent's best child that a
catalog item reaches (see `borrowed`).

`DictTrie` (`decoding/dict_trie.py`) is the readable pure-Python reference (nested dicts), used in tests and as
Hugging Face `generate`'s `prefix_allowed_tokens_fn`; the buffers, the in-place writer and the build's table helpers
are in `decoding/trie_storage.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from mmgr.decoding.dict_trie import DictTrie
from mmgr.decoding.trie_storage import (
    DENSE_RATIO,
    LEAF,
    NO_NODE,
    Buffers,
    Writer,
    check_items,
    child_spans,
    fresh_prefixes,
    grown,
    laid_out,
    node_ids,
    spare,
)

__all__ = ["LEAF", "NO_NODE", "DictTrie", "PrefixTrie"]


@dataclass(frozen=True)
class PrefixTrie:
    """Prefix trie of item token tuples as tensors (see the module docstring for the layout)."""

    item_tokens: Tensor        # (N, L) int64: token ids of each item
    children: Tensor           # (C,) int32: the rows of the internal nodes, back to back (spare cells -1)
    rows: Tensor               # (I', 3) int64 per internal node: start of its row, its first token, its width
    num_internal: int          # internal nodes: ids 0 .. num_internal - 1 (`rows` has spare rows after them)
    window_start: tuple[int, ...]  # (L,): first token id allowed at each depth
    window_size: tuple[int, ...]   # (L,): width of the token window of each depth
    vocab_size: int            # width of the masks `allowed_mask` returns (>= largest token id + 1)
    dense_depths: tuple[int, ...] = ()   # depths whose rows all span the depth's window
    borrow: Tensor | None = None        # like `children`, bool: the child borrows its best catalog sibling's score
    borrow_depths: tuple[int, ...] = ()  # the depths where some child does
    buffers: Buffers | None = field(default=None, compare=False, repr=False)   # shared storage (writes)
    version: int = field(default=0, compare=False, repr=False)                  # buffers.version when made

    @classmethod
    def build(cls, item_tokens: Tensor, vocab_size: int | None = None) -> PrefixTrie:
        """Trie of `item_tokens` (N, L) (unique rows of non-negative token ids; row i is item i)."""
        items = torch.as_tensor(item_tokens).detach().to("cpu", torch.int64)
        check_items(items)
        top = int(items.max()) + 1
        vocab_size = top if vocab_size is None else vocab_size
        if vocab_size < top:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the largest item token + 1 ({top})")
        tokens = items.numpy()
        order = np.lexsort(tokens.T[::-1])                               # rows in lexicographic order
        ordered = tokens[order]
        fresh = fresh_prefixes(ordered)                                 # (N, L)
        shared = len(tokens) - int(fresh[:, -1].sum())
        if shared:
            raise ValueError(f"{shared} items share a token tuple with another item; resolve collisions first "
                             "(mmgr.tokenizers.collisions)")
        nodes, num_internal = node_ids(fresh, order)                    # (N, L + 1)
        low, size = tokens.min(axis=0), tokens.max(axis=0) - tokens.min(axis=0) + 1
        spans = [child_spans(ordered, fresh, d) for d in range(tokens.shape[1])]
        dense = tuple(d for d, span in enumerate(spans) if len(span) * size[d] <= DENSE_RATIO * span[:, 1].sum())
        for d in dense:
            spans[d][:] = (low[d], size[d])
        sentinel = int(size.max())
        rows = laid_out(np.concatenate(spans), sentinel)                # (I, 3)
        cells = int(rows[-1, 0] + rows[-1, 2])
        children = np.full(spare(cells) + sentinel, NO_NODE, dtype=np.int32)
        for d in range(tokens.shape[1]):
            first = fresh[:, d]                                          # one row per child of depth d + 1
            parent = rows[nodes[first, d]]
            children[parent[:, 0] + ordered[first, d] - parent[:, 1]] = nodes[first, d + 1]
        buffers = Buffers(grown(items, spare(len(items)), 0), torch.from_numpy(children),
                           grown(torch.from_numpy(rows), spare(num_internal), 0), None, cells, sentinel)
        return cls(buffers.items[:len(items)], buffers.children, buffers.rows, num_internal, tuple(low.tolist()),
                   tuple(size.tolist()), vocab_size, dense, buffers=buffers)

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
        return self.num_internal + self.num_items

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors (spare capacity included)."""
        held = [self.item_tokens, self.children, self.rows] + ([self.borrow] if self.borrow is not None else [])
        return sum(t.untyped_storage().nbytes() for t in held)

    @property
    def device(self) -> torch.device:
        return self.children.device

    def to(self, device: torch.device | str) -> PrefixTrie:
        """The same trie with its tensors on `device` (itself when they are there already)."""
        if self.children.to(device) is self.children:
            return self
        return self._copied(device)

    def _copied(self, device: torch.device | str) -> PrefixTrie:
        """This trie on its own copy of the buffers, on `device`, without the cells of nodes that are not its own
        (another trie's, written after this one was made: only an older trie has such cells)."""
        newest = self._newest()
        cells = min(self.buffers.cells, len(self.children)) if self.buffers is not None else len(self.children)
        children = self.children.to(device, copy=True)
        borrow = self.borrow.to(device, copy=True) if self.borrow is not None else None
        if not newest:
            stale = (children >= 0) & ~self._own(children)
            children[stale] = NO_NODE
            if borrow is not None:
                borrow &= ~stale
        items = self.buffers.items if newest else grown(self.item_tokens.cpu(), spare(self.num_items), 0)
        sentinel = self.buffers.sentinel if self.buffers is not None else 0
        buffers = Buffers(items.to(device, copy=True), children, self.rows.to(device, copy=True), borrow, cells,
                           sentinel)
        return replace(self, item_tokens=buffers.items[:self.num_items], children=buffers.children,
                       rows=buffers.rows, borrow=buffers.borrow, buffers=buffers, version=0)

    # ---- adding items --------------------------------------------------------------------------------------------

    def extended(self, item_tokens: Tensor, borrow_depths: Sequence[int] = ()) -> PrefixTrie:
        """This trie with `item_tokens` (M, L) added as items N .. N + M - 1. At each of `borrow_depths` (collision
        levels), a child that only the added items reach borrows its best catalog sibling's score, as `borrowing`
        marks it (a trie that borrows already keeps its depths). The same trie as a build of all items (then
        `borrowing`), without the rebuild: O(M L) in place when this is the newest trie of its buffers (see the
        module docstring), after a copy of the buffers otherwise."""
        new = torch.as_tensor(item_tokens).detach().to("cpu", torch.int64)
        depths = self._borrow_depths(borrow_depths)
        self._check_new(new)
        if len(new) == 0:
            return self
        writable = self.buffers is not None and self.buffers.version == self.version and self.device.type == "cpu"
        trie = self if writable else self._copied("cpu")
        return trie._insert(new, depths).to(self.device)

    def _borrow_depths(self, depths: Sequence[int]) -> tuple[int, ...]:
        wanted = {d for d in depths if d < self.depth}
        if self.borrow is None:
            return tuple(sorted(wanted))
        if not wanted <= set(self.borrow_depths):
            raise ValueError(f"this trie borrows at depths {self.borrow_depths}, not {sorted(wanted)}")
        return self.borrow_depths

    def _check_new(self, new: Tensor) -> None:
        if new.ndim != 2 or new.shape[1] != self.depth:
            raise ValueError(f"new items must be an (M, {self.depth}) tensor, got shape {tuple(new.shape)}")
        if len(new) == 0:
            return
        if int(new.min()) < 0 or int(new.max()) >= self.vocab_size:
            raise ValueError(f"new item tokens must be token ids in [0, {self.vocab_size})")
        if self.num_items + len(new) >= LEAF // self.depth:
            raise ValueError(f"a trie holds fewer than {LEAF // self.depth} items")
        taken = int((self.to("cpu").lookup(new) >= 0).sum()) + len(new) - torch.unique(new, dim=0).shape[0]
        if taken:
            raise ValueError(f"{taken} new items share a token tuple with another item; resolve collisions first "
                             "(mmgr.tokenizers.collisions)")

    def _insert(self, new: Tensor, depths: tuple[int, ...]) -> PrefixTrie:
        """Write `new` into this trie's buffers (the newest trie of them, on the CPU)."""
        buffers = self.buffers
        buffers.version += 1                       # from here on, this trie is no longer the newest
        if depths and buffers.borrow is None:
            buffers.borrow = torch.zeros(len(buffers.children), dtype=torch.bool)
        low = torch.minimum(torch.tensor(self.window_start), new.min(dim=0).values).tolist()
        high = torch.maximum(torch.tensor(self.window_start) + torch.tensor(self.window_size) - 1,
                             new.max(dim=0).values).tolist()
        size = [h - lo + 1 for lo, h in zip(low, high, strict=True)]
        dense = {d: (self.window_start[d], self.window_size[d]) for d in self.dense_depths}
        writer = Writer(buffers, self.num_internal, self.num_items, dense, max(size))
        for tokens in new.tolist():
            writer.insert(tokens, depths)
        return replace(self, item_tokens=buffers.items[:writer.items], children=buffers.children, rows=buffers.rows,
                       num_internal=writer.internal, window_start=tuple(low), window_size=tuple(size),
                       dense_depths=tuple(d for d in self.dense_depths if (low[d], size[d]) == dense[d]),
                       borrow=buffers.borrow if depths or self.borrow is not None else None, borrow_depths=depths,
                       version=buffers.version)

    # ---- onboarded items -----------------------------------------------------------------------------------------

    def borrowing(self, catalog: int, depths: Sequence[int]) -> PrefixTrie:
        """This trie where, at each of `depths`, a child that only items from row `catalog` on reach (onboarded
        items: never a training target) is scored by the search as its parent's best child that a catalog item
        reaches (kept as the model scores it where the parent has none). The model gives a code it never saw as a
        target under a prefix almost no probability, which would bury every onboarded item at the first code where
        it leaves the catalog's prefixes (`inference/prepared.onboarded_borrowing` borrows at every depth)."""
        trie = self._copied("cpu")
        borrow = torch.zeros(len(trie.children), dtype=torch.bool)
        items = trie.item_tokens
        nodes = torch.zeros(len(items), dtype=torch.int64)
        for depth in range(self.depth):
            cells, inside = trie._cells(nodes, items[:, depth])
            if depth in depths:
                borrow[cells[catalog:]] = True
                borrow[cells[:catalog]] = False
            nodes = trie._read(cells, inside)
        trie.buffers.borrow = borrow
        return replace(trie, borrow=borrow, borrow_depths=tuple(d for d in depths if d < self.depth)).to(self.device)

    def borrowed(self, nodes: Tensor, depth: int, log_probs: Tensor, children: Tensor) -> Tensor:
        """`log_probs` (R, W) of the children of `nodes` (R,) at `depth` (`children_window`), a borrowing child's
        replaced by the best of its catalog siblings' (kept when it has none)."""
        if depth not in self.borrow_depths or self.borrow is None:
            return log_probs
        borrow = self._window(self.borrow, nodes, depth)[0] & (children >= 0)       # (R, W)
        catalog = (children >= 0) & ~borrow
        best = log_probs.masked_fill(~catalog, float("-inf")).amax(dim=1, keepdim=True)   # (R, 1)
        return torch.where(borrow & torch.isfinite(best), best, log_probs)

    # ---- tensor lookups (no Python loop over nodes) --------------------------------------------------------------

    def _newest(self) -> bool:
        """Whether no other trie wrote into the buffers since this one was made (then every cell is its own)."""
        return self.buffers is not None and self.buffers.version == self.version

    def _own(self, nodes: Tensor) -> Tensor:
        """Whether each id is one of this trie's nodes."""
        return (((nodes >= 0) & (nodes < self.num_internal)) |
                ((nodes >= LEAF) & (nodes < LEAF + self.num_items)))

    def _row(self, nodes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Start, first token and width of each node's row; width 0 for leaves, -1 and other tries' nodes."""
        internal = (nodes >= 0) & (nodes < self.num_internal)
        start, low, width = self.rows[torch.where(internal, nodes, 0)].unbind(-1)
        return start, low, torch.where(internal, width, 0)

    def _cells(self, nodes: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Cell of each (node, token) in `children` (broadcast; clamped into the table) and whether the token is in
        the node's row."""
        start, low, width = self._row(nodes)
        offset = tokens - low
        return (start + offset).clamp(0, len(self.children) - 1), (offset >= 0) & (offset < width)

    def _read(self, cells: Tensor, inside: Tensor | None) -> Tensor:
        """The child in each cell (where `inside`), -1 elsewhere and where the cell names another trie's node."""
        child = self.children[cells].long()
        if inside is None and self._newest():
            return child
        found = child >= 0 if inside is None else inside & (child >= 0)
        if not self._newest():
            found &= self._own(child)
        return torch.where(found, child, NO_NODE)

    def _window(self, table: Tensor, nodes: Tensor, depth: int) -> tuple[Tensor, Tensor | None]:
        """Each node's cells of `table` (`children` or `borrow`) over the depth's token window, (R, W), and where
        they lie in the node's row (None: everywhere, at a dense depth). One contiguous read per node, from the
        cell where the window's first token would be."""
        width, first = self.window_size[depth], self.window_start[depth]
        if self.buffers is None or width > self.buffers.sentinel:        # a window that grew past the sentinel
            cells, inside = self._cells(nodes[:, None], torch.arange(width, device=nodes.device) + first)
            return table[cells], inside
        start, low, span = self._row(nodes)
        base = torch.where(span > 0, start + first - low, 0)              # no children: the -1 sentinel cells
        values = table.unfold(0, width, 1).index_select(0, base)          # (R, W)
        if depth in self.dense_depths:                                    # rows span the window
            return values, None
        lead, columns = low - first, _column_masks(width, nodes.device)  # columns of the window before each row
        inside = columns[(lead + span).clamp(0, width)] ^ columns[lead.clamp(0, width)]   # lead <= column < end
        return values, inside

    def allowed_mask(self, nodes: Tensor) -> Tensor:
        """(B,) node ids -> (B, V) bool: the tokens that extend each prefix (all False for leaves and -1)."""
        start, low, width = self._row(nodes)                              # (B,)
        span = int(width.max()) if len(nodes) else 0
        offset = torch.arange(span, device=nodes.device)[None]            # (1, S)
        children = self._read((start[:, None] + offset).clamp(0, len(self.children) - 1), offset < width[:, None])
        mask = torch.zeros(len(nodes), self.vocab_size + span, dtype=torch.bool, device=nodes.device)
        return mask.scatter_(1, low[:, None] + offset, children >= 0)[:, :self.vocab_size]   # (B, V)

    def step(self, nodes: Tensor, tokens: Tensor) -> Tensor:
        """Child of each node through each token (same shapes), -1 where that token does not extend the prefix."""
        return self._read(*self._cells(nodes, tokens))

    def children_window(self, nodes: Tensor, depth: int) -> Tensor:
        """(R,) nodes of depth `depth` -> (R, window_size[depth]) int64 children over that depth's token window."""
        children, inside = self._window(self.children, nodes, depth)           # (R, W), a fresh tensor
        if inside is not None:
            children.masked_fill_(~inside, NO_NODE)
        if not self._newest():
            children.masked_fill_(~self._own(children), NO_NODE)
        return children.long()

    def items_of(self, nodes: Tensor) -> Tensor:
        """Item index of each leaf node, -1 for anything else (internal nodes, -1)."""
        leaf = (nodes >= LEAF) & (nodes < LEAF + self.num_items)
        return torch.where(leaf, nodes - LEAF, NO_NODE)

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


@lru_cache(maxsize=64)
def _column_masks(width: int, device: torch.device) -> Tensor:
    """(width + 1, width) bool: row k marks the columns < k."""
    columns = torch.arange(width, device=device)
    return columns[None] < torch.arange(width + 1, device=device)[:, None]
