"""The storage of `PrefixTrie` (`mmgr.decoding.trie`): buffers with spare capacity that tries built from one another
share, the in-place writer that adds items to them (O(L) per item), and the sorted-table helpers of a build."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

NO_NODE = -1
LEAF = 1 << 30                 # the leaf of item i is node LEAF + i; internal node ids stay below LEAF
MIN_SPARE = 1024               # spare capacity (cells, internal nodes, items) of a new or grown buffer, at least
DENSE_RATIO = 4                # a depth's rows span its whole window when that costs at most 4x its compact rows


class Buffers:
    """The storage that tries built from one another share: tensors with spare capacity past the used part. The
    first `sentinel` cells stay -1, and at least as many spare cells follow the used ones, so a window-wide read
    from a row's window start (at most `sentinel` cells before the row) stays inside the table."""

    def __init__(self, items: Tensor, children: Tensor, rows: Tensor, borrow: Tensor | None, cells: int,
                 sentinel: int) -> None:
        self.items = items              # (item capacity, L) int64; rows past the trie's items are unused
        self.children = children        # (cell capacity,) int32; cells from `cells` on are -1
        self.rows = rows                # (internal capacity, 3) int64: start, first token, width per internal node
        self.borrow = borrow            # (cell capacity,) bool, or None
        self.cells = cells              # cells in use (new rows are written from here)
        self.sentinel = sentinel        # -1 cells before the first row
        self.version = 0                # bumped by every extension: only the trie holding the newest one writes


def spare(used: int) -> int:
    return used + max(MIN_SPARE, used // 8)


def grown(tensor: Tensor, size: int, fill: int | bool) -> Tensor:
    """`tensor` copied into a larger one of `size` rows, the new rows set to `fill`."""
    out = torch.full((size, *tensor.shape[1:]), fill, dtype=tensor.dtype)
    out[:len(tensor)] = tensor
    return out


class Writer:
    """Adds items to buffers in place, one token at a time (numpy views of the tensors; O(L) per item). New nodes
    at a dense depth (`dense`: depth -> its window) get a row over the whole window."""

    def __init__(self, buffers: Buffers, internal: int, items: int, dense: dict[int, tuple[int, int]],
                 reach: int) -> None:
        self.buffers, self.internal, self.items, self.dense = buffers, internal, items, dense
        self.reach = reach              # the widest window: spare cells kept after the used ones
        self._views()

    def _views(self) -> None:
        b = self.buffers
        self.children, self.rows = b.children.numpy(), b.rows.numpy()
        self.borrow = b.borrow.numpy() if b.borrow is not None else None

    def insert(self, tokens: list[int], depths: tuple[int, ...]) -> None:
        item = self._new_item(tokens)
        node = 0
        for depth, token in enumerate(tokens):
            child = self._child(node, token)
            if child == NO_NODE:
                child = LEAF + item if depth == len(tokens) - 1 else self._new_node(depth + 1)
                cell = self._cell(node, token)
                self.children[cell] = child
                if depth in depths:
                    self.borrow[cell] = True
            node = child

    def _child(self, node: int, token: int) -> int:
        start, low, width = self.rows[node].tolist()
        return int(self.children[start + token - low]) if low <= token < low + width else NO_NODE

    def _new_item(self, tokens: list[int]) -> int:
        b = self.buffers
        if self.items == len(b.items):
            b.items = grown(b.items, spare(self.items + 1), 0)
        b.items[self.items] = torch.tensor(tokens)
        self.items += 1
        return self.items - 1

    def _new_node(self, depth: int) -> int:
        b = self.buffers
        if self.internal == len(b.rows):
            b.rows = grown(b.rows, spare(self.internal + 1), 0)
            self._views()
        first, width = self.dense.get(depth, (0, 0))                      # no children yet
        at = self._reserve(width)
        self.rows[self.internal] = (at, first, width)
        self.internal += 1
        return self.internal - 1

    def _cell(self, node: int, token: int) -> int:
        """The cell of `token` in the node's row, the row first copied to the end of the table, wide enough, when
        the token is outside it."""
        start, low, width = self.rows[node].tolist()
        if low <= token < low + width:
            return start + token - low
        first = min(low, token) if width else token
        span = (max(low + width - 1, token) if width else token) - first + 1
        at = self._reserve(span)
        if width:
            self.children[at + low - first:at + low - first + width] = self.children[start:start + width]
            if self.borrow is not None:
                self.borrow[at + low - first:at + low - first + width] = self.borrow[start:start + width]
        self.rows[node] = (at, first, span)
        return at + token - first

    def _reserve(self, cells: int) -> int:
        """The first of `cells` fresh cells (-1) at the end of the used table, the buffers grown when full."""
        b = self.buffers
        at = b.cells
        if at + cells + self.reach > len(b.children):      # new tensors: rows too, whose moves point into them
            size = spare(at + cells) + self.reach
            b.children = grown(b.children, size, NO_NODE)
            b.borrow = grown(b.borrow, size, False) if b.borrow is not None else None
            b.rows = b.rows.clone()
            self._views()
        b.cells = at + cells
        return at


def check_items(items: Tensor) -> None:
    if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] == 0:
        raise ValueError(f"item_tokens must be a non-empty (N, L) tensor, got shape {tuple(items.shape)}")
    if int(items.min()) < 0:
        raise ValueError("item_tokens must be non-negative token ids")
    if items.shape[0] >= LEAF // items.shape[1]:
        raise ValueError(f"a trie holds fewer than {LEAF // items.shape[1]} items")


def fresh_prefixes(ordered: np.ndarray) -> np.ndarray:
    """(N, L) bool for lexicographically sorted rows: row i starts a new prefix of length d + 1 (column d)."""
    fresh = np.ones(ordered.shape, dtype=bool)
    fresh[1:] = np.logical_or.accumulate(ordered[1:] != ordered[:-1], axis=1)
    return fresh


def node_ids(fresh: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, int]:
    """Node of each sorted row's prefix of length 0 .. L (N, L + 1), internal nodes numbered depth by depth, the
    leaves LEAF + item; and the number of internal nodes."""
    rows, depth = fresh.shape
    nodes = np.zeros((rows, depth + 1), dtype=np.int64)                # length 0: the root, node 0
    first = 1
    for d in range(1, depth):
        nodes[:, d] = np.cumsum(fresh[:, d - 1]) - 1 + first
        first = int(nodes[-1, d]) + 1
    nodes[:, depth] = LEAF + order
    return nodes, first


def child_spans(ordered: np.ndarray, fresh: np.ndarray, depth: int) -> np.ndarray:
    """(nodes of `depth`, 2) first token and width of each node's children, in node id order: a node's children are
    the tokens at `depth` of its (contiguous, sorted) group of rows."""
    starts = np.flatnonzero(fresh[:, depth - 1]) if depth else np.zeros(1, dtype=np.int64)
    ends = np.append(starts[1:], len(ordered)) - 1
    low = ordered[starts, depth]
    return np.stack([low, ordered[ends, depth] - low + 1], axis=1)


def laid_out(spans: np.ndarray, sentinel: int) -> np.ndarray:
    """(I, 3) rows: start, first token, width, back to back after `sentinel` cells."""
    start = sentinel + np.concatenate([[0], np.cumsum(spans[:, 1])[:-1]])
    return np.concatenate([start[:, None], spans], axis=1)
