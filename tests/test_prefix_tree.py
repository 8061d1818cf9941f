"""The prefix tree readers pack prompts into (``caprl.readers.prefix_tree``), on raw token ids, without a model:
every query sees exactly its own prompt, shared runs are laid out once per row, rows keep to their size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from caprl.readers.prefix_tree import build_prefix_tree, common_prefix, cut_prefix, merge_rows, pack_tree

# Queries over a small vocabulary, often extending one another, so that they share prefixes.
queries = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=30), min_size=1, max_size=12)


def _check(rows, token_ids):
    """Each kept position sees exactly its query's prompt, and every query is answered (a query whose prompt is
    an ancestor repeated at the start of a later row is answered there too, from the same prompt)."""
    for row in rows:
        for position, q in row.keep:
            assert row.visible_ids(position) == token_ids[q]
    assert {q for row in rows for _, q in row.keep} == set(range(len(token_ids)))


@settings(max_examples=150, deadline=None)
@given(token_ids=queries, row_tokens=st.integers(4, 64), min_shared=st.integers(1, 4))
def test_every_query_sees_exactly_its_prompt_in_packed_and_merged_rows(token_ids, row_tokens, min_shared):
    root = build_prefix_tree(token_ids, range(len(token_ids)), min_shared)
    rows = pack_tree(root, row_tokens)
    _check(rows, token_ids)
    # In one row, a shared run is computed once: never more tokens than the prompts have. (Across rows a later row
    # computes again the ancestors it needs, so short rows can cost more: the price of splitting.)
    if len(rows) == 1:
        assert len(rows[0]) <= sum(map(len, token_ids))
    capacity = max([row_tokens, *map(len, rows)])
    merged = merge_rows(rows, capacity)
    _check(merged, token_ids)
    assert all(len(r) <= capacity for r in merged) and sum(map(len, merged)) == sum(map(len, rows))
    assert len(merged) <= len(rows)


def test_shared_runs_are_one_node_and_a_row_holds_them_once():
    token_ids = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6], [1, 2, 3, 7], [1, 2, 3, 4, 5]]
    (row,) = pack_tree(build_prefix_tree(token_ids, range(4), min_shared=1), row_tokens=64)
    # [1 2 3] once, [4] once, then 5, 6 and 7: seven tokens for four prompts of 19.
    assert len(row) == 7
    # A shared run shorter than min_shared stays in each branch: [4 5] and [4 6].
    (row,) = pack_tree(build_prefix_tree(token_ids, range(4), min_shared=2), row_tokens=64)
    assert len(row) == 8
    assert sorted(q for _, q in row.keep) == [0, 1, 2, 3]
    same = [p for p, q in row.keep if q in (0, 3)]
    assert same[0] == same[1]  # a duplicate prompt is answered at the same position


def test_rows_too_short_for_a_subtree_repeat_its_ancestors():
    head = list(range(10, 30))
    token_ids = [head + [k] * 8 for k in range(4)]  # 52 tokens as a tree: two rows of 20 + 8 + 8
    rows = pack_tree(build_prefix_tree(token_ids, range(4), 1), row_tokens=40)
    assert [len(r) for r in rows] == [36, 36]
    assert all(row.ids[:20] == head for row in rows)  # each row computes the shared head again
    _check(rows, token_ids)


def test_cut_prefix_drops_the_shared_start_and_keeps_positions():
    token_ids = [[1, 2, 3, 4], [1, 2, 3, 5, 6]]
    root = cut_prefix(build_prefix_tree(token_ids, range(2), 1), 2)
    (row,) = pack_tree(root, 64)
    assert row.ids[0] == 3 and row.pos[0] == 2  # the cut tokens are gone, positions continue after them
    assert [row.visible_ids(p) for p, _ in row.keep] == [[3, 4], [3, 5, 6]]


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([], [1]) == 0 and common_prefix([7], [7]) == 1
