"""LightGBM's exact SHAP contributions for large batches, each tree's computed once per way
through it instead of once per row.

Tree SHAP (``pred_contrib=True``) costs about leaves x depth² per tree and row: ~98% of batch
scoring time, where the probability alone is ~75x cheaper. But one tree's contributions to a
row depend on the row only through the way it goes at each of that tree's splits (path-dependent
Tree SHAP weighs the other side by its training cover, not by the row's values). A tree with 15
leaves has 14 splits, and a day's customers go through it in far fewer distinct ways than there
are customers. So, per tree: evaluate every split for every row (vectorized, with LightGBM's
rules), group rows by the bits of their way through, ask LightGBM's own ``pred_contrib`` for one
row per group and that tree alone, and give each row its group's numbers. The sum over trees is
LightGBM's answer up to the order of float additions (~1e-16).

Safety net: the leaf each row's evaluated way ends in must be the leaf LightGBM's ``pred_leaf``
puts it in, for every tree and row; any disagreement (a split rule this file misreads) falls back
to plain ``pred_contrib`` on the whole batch. Models this does not cover (linear trees, several
trees per iteration, more than 62 splits in a tree) take the plain path too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import lightgbm as lgb
import numpy as np

log = logging.getLogger(__name__)

# Below this many rows the plain call is as cheap as the bookkeeping.
MIN_ROWS = 2_000
# Rows per pass: bounds the per-tree temporaries (a few arrays of this length).
CHUNK_ROWS = 250_000
_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2
_ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| <= this is "zero"
_MAX_SPLITS = 62  # the way through a tree is packed into the bits of an int64


@dataclass(frozen=True)
class _Tree:
    """One tree's splits as LightGBM's model text stores them. ``left``/``right``: the child
    split's index, or ``~leaf`` (negative) for a leaf."""

    feature: np.ndarray
    threshold: np.ndarray
    decision: np.ndarray
    left: np.ndarray
    right: np.ndarray
    category_words: tuple[np.ndarray, ...]  # per categorical split: its category bitset

    @property
    def splits(self) -> int:
        return len(self.feature)

    def goes_left(self, columns: _Columns, node: int) -> np.ndarray:
        """Which rows go left at split ``node`` (LightGBM's numerical and categorical decisions
        on raw feature values: ``<=`` the threshold; NaN as zero unless NaN is the missing
        type; missing values go the split's default way; a category goes left when it is in
        the split's set, NaN and negative codes never do)."""
        feature, kind = int(self.feature[node]), int(self.decision[node])
        missing = (kind >> 2) & 3
        if kind & _CATEGORICAL:
            words = self.category_words[int(self.threshold[node])]
            code, valid = columns.codes(feature)
            valid = valid & (code < 32 * len(words))
            code = np.where(valid, code, 0)
            return valid & ((words[code >> 5] >> (code & 31).astype(np.uint32)) & 1).astype(bool)
        if missing == _MISSING_NAN:
            with np.errstate(invalid="ignore"):
                below = columns.raw(feature) <= self.threshold[node]
            absent = columns.nan(feature)
        else:
            below = columns.nan_as_zero(feature) <= self.threshold[node]
            if missing == _MISSING_NONE:
                return below
            absent = np.abs(columns.nan_as_zero(feature)) <= _ZERO
        return np.where(absent, bool(kind & _DEFAULT_LEFT), below)

    def leaf_of(self, ways: np.ndarray) -> np.ndarray:
        """The leaf each packed way through the tree ends in."""
        node = np.full(len(ways), 0 if self.splits else ~0, dtype=np.int64)
        for _ in range(self.splits):
            inside = node >= 0
            if not inside.any():
                break
            at = node[inside]
            left = (ways[inside] >> at) & 1
            node[inside] = np.where(left == 1, self.left[at], self.right[at])
        return ~node


class _Columns:
    """The batch feature by feature (contiguous), with the derived views splits need, each
    computed once per batch."""

    def __init__(self, x: np.ndarray):
        self._x = np.ascontiguousarray(x.T)
        self._cache: dict[tuple[str, int], object] = {}

    def _get(self, kind: str, feature: int, make):
        key = (kind, feature)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def raw(self, feature: int) -> np.ndarray:
        return self._x[feature]

    def nan(self, feature: int) -> np.ndarray:
        return self._get("nan", feature, lambda: np.isnan(self._x[feature]))

    def nan_as_zero(self, feature: int) -> np.ndarray:
        return self._get("zero", feature, lambda: np.where(self.nan(feature), 0.0,
                                                           self._x[feature]))

    def codes(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """Category codes as LightGBM casts them (truncated to int) and which are usable
        (not NaN, not negative)."""
        def make():
            nan = self.nan(feature)
            code = np.trunc(np.where(nan, -1.0, self._x[feature]))
            valid = ~nan & (code >= 0) & (code < 2**31)
            return np.where(valid, code, 0).astype(np.int64), valid
        return self._get("codes", feature, make)


def _numbers(fields: dict[str, str], key: str, dtype=np.float64) -> np.ndarray:
    return np.array(fields[key].split(), dtype=dtype)


def _parse(booster: lgb.Booster) -> list[_Tree] | None:
    """The trees of a booster from its model text, or None when this module cannot handle it."""
    text = booster.model_to_string()
    header, *blocks = text.split("\nTree=")
    if "num_tree_per_iteration=1\n" not in header:
        return None
    trees = []
    for block in blocks:
        if block.startswith(("feature_importances", "end of trees")):
            continue
        fields = dict(line.split("=", 1) for line in block.split("\n")[1:] if "=" in line)
        numbers = partial(_numbers, fields)
        if fields.get("is_linear", "0") != "0":
            return None
        if int(fields["num_leaves"]) <= 1:
            trees.append(_Tree(*(np.zeros(0) for _ in range(5)), ()))
            continue

        words: tuple[np.ndarray, ...] = ()
        if int(fields.get("num_cat", "0")) > 0:
            bounds = numbers("cat_boundaries", np.int64)
            bits = numbers("cat_threshold", np.uint64).astype(np.uint32)
            words = tuple(bits[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        tree = _Tree(numbers("split_feature", np.int64), numbers("threshold"),
                     numbers("decision_type", np.int64), numbers("left_child", np.int64),
                     numbers("right_child", np.int64), words)
        if tree.splits > _MAX_SPLITS:
            return None
        trees.append(tree)
    return trees if len(trees) == booster.num_trees() else None


def tree_contributions(booster: lgb.Booster, x: np.ndarray, min_rows: int = MIN_ROWS
                       ) -> np.ndarray:
    """``booster.predict(x, pred_contrib=True)``: (rows, features + 1), the bias last, on the
    raw score scale; computed once per way through each tree from ``min_rows`` rows up."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.shape[0] < max(min_rows, 1):
        return booster.predict(x, pred_contrib=True)
    trees = _parse(booster)
    if trees is None:
        return booster.predict(x, pred_contrib=True)
    # Feature-major, so that adding one feature's contributions writes contiguous memory.
    total = np.zeros((x.shape[1] + 1, x.shape[0]))
    for start in range(0, x.shape[0], CHUNK_ROWS):
        if not _grouped(booster, trees, x[start:start + CHUNK_ROWS],
                        total[:, start:start + CHUNK_ROWS]):
            log.warning("a split rule disagreed with LightGBM's own leaves: computing SHAP "
                        "contributions row by row for this batch")
            return booster.predict(x, pred_contrib=True)
    return total.T


def _grouped(booster: lgb.Booster, trees: list[_Tree], x: np.ndarray, total: np.ndarray
             ) -> bool:
    """Add the contributions of ``x``'s rows to ``total`` (features + 1, rows); False, with
    ``total`` partly written, when a split read here disagrees with LightGBM's leaves."""
    rows = x.shape[0]
    leaves = booster.predict(x, pred_leaf=True).reshape(rows, len(trees))
    columns = _Columns(x)
    for index, tree in enumerate(trees):
        ways = np.zeros(rows, dtype=np.int64)
        for node in range(tree.splits):
            ways |= tree.goes_left(columns, node).astype(np.int64) << node
        distinct, taker, group = _group(ways, tree.splits)
        if not np.array_equal(tree.leaf_of(distinct)[group], leaves[:, index]):
            return False
        phi = booster.predict(x[taker], start_iteration=index, num_iteration=1,
                              pred_contrib=True)
        for column in np.flatnonzero(np.any(phi != 0.0, axis=0)):
            total[column] += np.take(phi[:, column], group)
    return True


def _group(ways: np.ndarray, splits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct ways, one row taking each, and each row's group (its way's position)."""
    if splits > 20:
        return np.unique(ways, return_index=True, return_inverse=True)
    # Few splits: a table indexed by the way itself instead of a sort.
    size = 1 << splits
    distinct = np.flatnonzero(np.bincount(ways, minlength=size))
    slot = np.zeros(size, dtype=np.int64)
    slot[distinct] = np.arange(len(distinct))
    taker = np.empty(size, dtype=np.int64)
    taker[ways] = np.arange(len(ways))
    return distinct, taker[distinct], slot[ways]
