"""A fitted scikit-learn `IsolationForest` compiled for scoring, with
higher = more anomalous (`score_samples` flipped; the score is
2^(-mean path length / c(n)), in (0, 1], about 0.5 for ordinary rows).

- `CompiledForest` walks the fitted trees in plain Python, for one row at
  a time: scikit-learn costs milliseconds per call whatever the batch size.
- `BatchForest` scores a batch with each tree's compiled `apply`, the
  numbers of one `score_samples` call bit for bit, without its per-call
  overhead; `at_least` drops a row as soon as it provably cannot reach the
  threshold, so only the rows flagged are scored through every tree.

Measured speeds are in docs/detection.md. numpy and scikit-learn are
imported inside the methods that need them.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

# BatchForest.at_least drops rows that cannot reach the threshold every
# this many trees (a check costs about as much as a tenth of a tree).
_CHECK_TREES = 5


def average_path_length(n: int) -> float:
    """c(n): the average path length of an unsuccessful search in a binary
    search tree of n points, which normalises isolation depths (Liu et al.);
    the same formula as scikit-learn's."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + 0.5772156649015329) - 2.0 * (n - 1.0) / n


class CompiledForest:
    """A fitted `IsolationForest` as plain lists, to score one row without
    numpy's per-call overhead. Gives the same score as
    `-estimator.score_samples` (rows are rounded to float32 as sklearn does)."""

    __slots__ = ("trees", "denominator")

    def __init__(self, estimator: Any):
        n_features = estimator.n_features_in_
        self.trees: list[tuple[list[int], list[int], list[int], list[float], list[float]]] = []
        for tree, features in zip(
            estimator.estimators_, estimator.estimators_features_, strict=True
        ):
            t = tree.tree_
            left, right = t.children_left.tolist(), t.children_right.tolist()
            feature, threshold = t.feature.tolist(), t.threshold.tolist()
            if len(features) != n_features:  # trees fitted on a subset of columns
                feature = [int(features[f]) if f >= 0 else -1 for f in feature]
            samples = t.n_node_samples.tolist()
            # Node ids are assigned parents first, so one pass gives depths.
            depth = [0] * len(left)
            value = [0.0] * len(left)
            for node, child in enumerate(left):
                if child != -1:
                    depth[child] = depth[right[node]] = depth[node] + 1
                # A leaf of n training points stands for a subtree of depth c(n).
                value[node] = depth[node] + average_path_length(samples[node])
            self.trees.append((left, right, feature, threshold, value))
        self.denominator = len(self.trees) * average_path_length(estimator.max_samples_)

    def score(self, row: Sequence[float]) -> float:
        x = array("f", row).tolist()
        total = 0.0
        for left, right, feature, threshold, value in self.trees:
            node = 0
            while (child := left[node]) != -1:
                node = child if x[feature[node]] <= threshold[node] else right[node]
            total += value[node]
        return 2.0 ** (-total / self.denominator) if self.denominator else 1.0


class BatchForest:
    """A fitted `IsolationForest` scoring a batch: each tree's own
    `tree_.apply` (compiled) finds the rows' leaves, and the depths add up
    as in `score_samples`, in the same order with the same per-node values,
    so the scores are the same to the last bit. What it leaves out is
    `score_samples`' per-call overhead (input validation, one joblib task
    per tree).

    It reads the attributes `score_samples` itself reads, private to
    scikit-learn; should a version lack them or score differently (checked
    on a few probe rows when the model is loaded), it calls `score_samples`
    instead, with a warning."""

    __slots__ = ("estimator", "trees", "denominator", "shortest_rest")

    def __init__(self, estimator: Any):
        self.estimator = estimator
        self.trees: list[tuple[Any, Any, Any]] | None = None
        self.denominator: Any = None
        # shortest_rest[i]: the least trees i, i+1, ... can add to a row's
        # depth (the sum of their shallowest leaves' values); see at_least.
        self.shortest_rest: list[float] = []
        try:
            self._compile(estimator)
            self._check(estimator)
        except Exception as exc:  # noqa: BLE001 - any mismatch means: use score_samples
            log.warning("isolation forest: scoring through score_samples (%s)", exc)
            self.trees = None

    def _compile(self, estimator: Any) -> None:
        import numpy as np
        from sklearn.ensemble._iforest import _average_path_length

        subsample = estimator._max_features != estimator.n_features_in_
        self.trees = [
            # The node values score_samples adds up for a row ending in that node.
            (tree.tree_, np.asarray(features) if subsample else None, lengths + averages - 1.0)
            for tree, features, lengths, averages in zip(
                estimator.estimators_,
                estimator.estimators_features_,
                estimator._decision_path_lengths,
                estimator._average_path_length_per_tree,
                strict=True,
            )
        ]
        self.denominator = len(estimator.estimators_) * _average_path_length(
            [estimator._max_samples]
        )
        shortest = [float(values[tree.children_left == -1].min()) for tree, _, values in self.trees]
        self.shortest_rest = [math.fsum(shortest[i:]) for i in range(len(shortest) + 1)]

    def _check(self, estimator: Any) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        probe = rng.standard_normal((256, estimator.n_features_in_)) * rng.choice(
            [0.5, 2.0, 8.0], (256, 1)
        )
        probe = probe.astype(np.float32)
        if not np.array_equal(self.score(probe), -estimator.score_samples(probe)):
            raise ValueError("the compiled trees score differently from score_samples")

    def score(self, X: Any) -> Any:
        """Scores (higher = more anomalous) of a 2-D float32 array of rows:
        -score_samples(X)."""
        import numpy as np

        if self.trees is None:
            return -self.estimator.score_samples(X)
        if X.ndim != 2 or X.shape[1] != self.estimator.n_features_in_:
            raise ValueError(
                f"need rows of {self.estimator.n_features_in_} features, got shape {X.shape}"
            )
        depths = np.zeros(len(X))
        for tree, features, values in self.trees:
            depths += values[tree.apply(X if features is None else X[:, features])]
        return self._scores(depths)

    def _scores(self, depths: Any) -> Any:
        import numpy as np

        denominator = self.denominator
        return 2 ** (
            -np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0)
        )

    def at_least(self, X: Any, threshold: float) -> tuple[Any, Any]:
        """The indices of the rows of X scoring at least `threshold`, and
        their scores: what filtering `score(X)` gives, the scores bit for
        bit, for less work. A row's depth only grows tree after tree, and
        a higher depth is a lower score; so once a row's depth so far plus
        the least the remaining trees can add (each its shallowest leaf)
        exceeds the depth of the threshold score, the row cannot reach
        the threshold and is dropped from the batch; with a threshold in
        the far tail most rows go after a few trees. The rows kept add up
        their depths in the same order as in `score`, hence the same
        scores."""
        import numpy as np

        if self.trees is None or not 0.0 < threshold <= 1.0 or not np.all(self.denominator != 0):
            scores = self.score(X)
            keep = np.flatnonzero(scores >= threshold)
            return keep, scores[keep]
        if X.ndim != 2 or X.shape[1] != self.estimator.n_features_in_:
            raise ValueError(
                f"need rows of {self.estimator.n_features_in_} features, got shape {X.shape}"
            )
        # score >= threshold  <=>  depth <= -log2(threshold) * denominator. The
        # margin (1e-9 relative) is far above the rounding of these sums, and
        # drops nothing that matters: a kept row is only scored in full.
        limit = -math.log2(threshold) * float(self.denominator[0])
        limit += 1e-9 * (limit + 1.0)
        rows = np.arange(len(X))
        depths = np.zeros(len(X))
        shortest_rest = self.shortest_rest
        for i, (tree, features, values) in enumerate(self.trees, 1):
            depths += values[tree.apply(X if features is None else X[:, features])]
            if i % _CHECK_TREES == 0 and i < len(self.trees):
                alive = depths + shortest_rest[i] <= limit
                if not alive.all():
                    X, depths, rows = X[alive], depths[alive], rows[alive]
                    if not len(rows):
                        break
        scores = self._scores(depths)
        keep = scores >= threshold
        return rows[keep], scores[keep]
