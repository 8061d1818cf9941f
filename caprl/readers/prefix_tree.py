"""The prefix tree a reader packs its prompts into: shared token runs computed once, laid out in packed rows.

Prefix sharing. The prompts about one caption share a long token prefix (chat template, instruction, few-shot
turns, caption), and often all prompts of a call share the part before the caption. The queries of a call are put
in a prefix tree (radix tree over token ids: a run of tokens that several queries share is one node), and the
tree is laid out depth first in *packed rows* of about ``row_tokens`` tokens: each node's tokens once, after its
ancestors'. A custom attention mask lets a token see the earlier tokens of its own node and all tokens of its
node's ancestors, never a sibling branch, and position ids restart where each node's parent ends, so every query
sees exactly its own prompt. When a subtree does not fit in a row, the next row starts with the ancestors it needs
(computed again). Each row is one sequence of a batched forward — no KV cache, no levels — because on a CPU a
forward streams every weight from memory once, and a few large forwards beat many small ones.

>>> root = build_prefix_tree([[1, 2, 3, 4], [1, 2, 3, 5]], [0, 1], min_shared=2)
>>> [(len(r), r.keep) for r in pack_tree(root, row_tokens=16)]
[(5, [(3, 0), (4, 1)])]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Node:
    """A run of tokens in the prefix tree: ``tokens`` sit at positions ``start``.. and follow the parent's."""

    __slots__ = ("tokens", "start", "parent", "children", "ends")

    def __init__(self, tokens: list[int], start: int, parent: Node | None) -> None:
        self.tokens = tokens
        self.start = start
        self.parent = parent
        self.children: list[Node] = []
        self.ends: list[tuple[int, int]] = []  # (query, offset in ``tokens`` of the query's last token)


def build_prefix_tree(token_ids: Sequence[Sequence[int]], indices: Sequence[int], min_shared: int) -> Node:
    """The compressed prefix tree of the queries ``indices`` (an empty root). A run of tokens that two or more
    queries share is one node; runs shorter than ``min_shared`` are pushed down into their children instead."""
    root = Node([], 0, None)
    # Sorted sequences: the queries below any node are contiguous, and a run's common prefix is that of its first
    # and last member. Iterative, so that deep trees do not hit the recursion limit.
    stack: list[tuple[Node, list[int], int]] = [(root, sorted(indices, key=lambda i: token_ids[i]), 0)]
    while stack:
        node, members, depth = stack.pop()
        rest = []
        for i in members:
            if len(token_ids[i]) == depth:  # the query ends with this node (a duplicate, or a prefix of another)
                node.ends.append((i, len(node.tokens) - 1))
            else:
                rest.append(i)
        run: list[int] = []
        for k, i in enumerate(rest):
            run.append(i)
            if k + 1 < len(rest) and token_ids[rest[k + 1]][depth] == token_ids[i][depth]:
                continue
            first, last = token_ids[run[0]], token_ids[run[-1]]
            shared = common_prefix(first[depth:], last[depth:]) if len(run) > 1 else len(first) - depth
            child = Node(list(first[depth : depth + shared]), depth, node)
            node.children.append(child)
            stack.append((child, run, depth + shared))
            run = []

    todo = [root]
    while todo:
        node = todo.pop()
        pending = list(reversed(node.children))
        kept: list[Node] = []
        while pending:
            child = pending.pop()
            if child.children and not child.ends and len(child.tokens) < min_shared:
                for grandchild in reversed(child.children):
                    grandchild.tokens = child.tokens + grandchild.tokens
                    grandchild.start = child.start
                    grandchild.ends = [(q, off + len(child.tokens)) for q, off in grandchild.ends]
                    grandchild.parent = node
                    pending.append(grandchild)
            else:
                kept.append(child)
        node.children = kept
        todo.extend(kept)
    return root


def subtree_tokens(root: Node) -> dict[int, int]:
    """Tokens in each node's subtree (its own and all its descendants'), keyed by ``id(node)``."""
    sizes: dict[int, int] = {}
    order: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    for node in reversed(order):  # children before parents
        sizes[id(node)] = len(node.tokens) + sum(sizes[id(c)] for c in node.children)
    return sizes


class PackedRow:
    """Part of a prefix tree laid out as one sequence: each node's tokens once, after its ancestors' tokens.

    ``seg[t]`` is the segment (node) of token ``t`` and ``parent[k]`` the segment of node ``k``'s parent in this
    row (-1: none); a token sees the earlier tokens of its own segment and every token of its segments'
    ancestors, so each query's last token sees exactly its own prompt, at its own positions ``pos``.
    """

    __slots__ = ("ids", "pos", "seg", "parent", "keep", "_where")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.pos: list[int] = []
        self.seg: list[int] = []
        self.parent: list[int] = []
        self.keep: list[tuple[int, int]] = []  # (position in row, query)
        self._where: dict[int, int] = {}  # id(node) -> segment

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, node: Node) -> bool:
        return id(node) in self._where

    def add(self, node: Node) -> None:
        """Append ``node``'s tokens; its parent (unless the root) must already be in the row."""
        parent = node.parent
        k = len(self.parent)
        self.parent.append(self._where[id(parent)] if parent is not None and parent.parent is not None else -1)
        self._where[id(node)] = k
        at = len(self.ids)
        self.ids += node.tokens
        self.pos += range(node.start, node.start + len(node.tokens))
        self.seg += [k] * len(node.tokens)
        self.keep += [(at + offset, q) for q, offset in node.ends]

    def extend(self, other: PackedRow) -> None:
        """Append ``other``'s tokens as an independent part of this row: no token of one sees a token of the
        other, so each keeps exactly its own prompts (rows are merged to fill a forward without padding)."""
        tokens, segments = len(self.ids), len(self.parent)
        self.ids += other.ids
        self.pos += other.pos
        self.seg += [k + segments for k in other.seg]
        self.parent += [p + segments if p >= 0 else -1 for p in other.parent]
        self.keep += [(at + tokens, q) for at, q in other.keep]
        self._where.update({key: k + segments for key, k in other._where.items()})

    def visible_ids(self, position: int) -> list[int]:
        """The tokens the token at ``position`` sees, in order: at a kept position, exactly its query's prompt."""
        vis = self.visibility()[self.seg[position]]
        return [self.ids[j] for j in range(position + 1) if vis[self.seg[j]]]

    def visibility(self) -> np.ndarray:
        """``(segments, segments)`` bool: row ``k`` marks node ``k`` and its ancestors in this row."""
        n = len(self.parent)
        vis = np.eye(n, dtype=bool)
        for k, p in enumerate(self.parent):  # parents come before their children
            if p >= 0:
                vis[k] |= vis[p]
        return vis


def pack_tree(root: Node, row_tokens: int) -> list[PackedRow]:
    """Lay the tree out in rows of about ``row_tokens`` tokens, depth first.

    A subtree that does not fit in what is left of a row goes to a new row when it fits in a fresh one; a new row
    starts with the path of ancestors its first node needs (those tokens are computed again, the price of
    splitting). A node longer than a row still gets a row of its own.
    """
    sizes = subtree_tokens(root)
    rows: list[PackedRow] = []
    row = PackedRow()

    def path_of(node: Node) -> list[Node]:
        path = []
        p = node.parent
        while p is not None and p.parent is not None:
            path.append(p)
            p = p.parent
        return path[::-1]

    def path_len(node: Node) -> int:
        return sum(len(p.tokens) for p in path_of(node))

    stack = list(reversed(root.children))
    while stack:
        node = stack.pop()
        subtree = sizes[id(node)]
        path = 0 if node.parent is root or row.has(node.parent) else path_len(node)
        fits_fresh = subtree <= row_tokens - path_len(node)
        overflows = len(row) + path + subtree > row_tokens
        if len(row) and overflows and (fits_fresh or len(row) + path + len(node.tokens) > row_tokens):
            rows.append(row)
            row = PackedRow()
        if node.parent is not root and not row.has(node.parent):
            for ancestor in path_of(node):
                if not row.has(ancestor):
                    row.add(ancestor)
        row.add(node)
        stack.extend(reversed(node.children))
    if len(row):
        rows.append(row)
    return rows


def cut_prefix(root: Node, n: int) -> Node:
    """The tree without its first ``n`` tokens, which every query shares and none ends in: the root's only child
    loses them (its tokens keep their positions), or its children take its place when it has no more."""
    [top] = root.children
    if len(top.tokens) < n or any(offset < n for _, offset in top.ends):
        raise ValueError(f"the queries do not all share {n} leading tokens and continue past them")
    if len(top.tokens) == n:
        root.children = top.children
        for child in top.children:
            child.parent = root
    else:
        top.tokens = top.tokens[n:]
        top.start += n
        top.ends = [(q, offset - n) for q, offset in top.ends]
    return root


def merge_rows(rows: Sequence[PackedRow], capacity: int) -> list[PackedRow]:
    """First-fit-decreasing: rows merged (:meth:`PackedRow.extend`) into rows of at most ``capacity`` tokens.

    A batched forward pads every row to its longest, and the tree packer leaves short rows behind (a subtree that
    did not fit, the last row): one reward call of 1,741 tokens ran as rows of 908, 571 and 262 tokens, 2,724
    computed. Merged, the same call is two rows of 908 and 833 (``benchmarks/reader_speed.py``)."""
    bins: list[PackedRow] = []
    for row in sorted(rows, key=len, reverse=True):
        for b in bins:
            if len(b) + len(row) <= capacity:
                b.extend(row)
                break
        else:
            merged = PackedRow()
            merged.extend(row)
            bins.append(merged)
    return bins
