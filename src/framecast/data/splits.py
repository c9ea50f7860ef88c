"""Assigning videos to train/val/test: one rule for every dataset writer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from framecast.data.sources import natural_key
from framecast.errors import DataError


def split_fractions(splits: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative train/val/test ratios with a positive sum → fractions summing to 1."""
    try:
        ratios = tuple(float(r) for r in splits)
    except (TypeError, ValueError):
        ratios = ()
    if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or sum(ratios) <= 0:
        raise DataError(
            "splits (train, val, test ratios) must be three non-negative numbers with a positive sum "
            f"(like 0.8,0.1,0.1), got {splits!r}"
        )
    total = sum(ratios)
    return ratios[0] / total, ratios[1] / total, ratios[2] / total


def split_counts(n: int, ratios: tuple[float, float, float]) -> tuple[int, int, int]:
    """Videos per split for ``n`` videos: val and test rounded, train the rest.

    Train always gets at least one video. Val, then test, get at least one when their
    ratio is positive and train can spare one: a run needs a validation split even
    when there are only a handful of videos.
    """
    if n == 0:
        return 0, 0, 0
    n_val = math.floor(n * ratios[1] + 0.5)
    n_test = math.floor(n * ratios[2] + 0.5)
    # Train must never be empty: take back from test first, then from val.
    excess = max(0, n_val + n_test - (n - 1))
    from_test = min(excess, n_test)
    n_test -= from_test
    n_val -= excess - from_test
    if ratios[1] > 0 and n_val == 0 and n - n_test > 1:
        n_val = 1
    if ratios[2] > 0 and n_test == 0 and n - n_val > 1:
        n_test = 1
    return n - n_val - n_test, n_val, n_test


def assign_splits(
    video_ids: Sequence[str], ratios: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """Map each video id to a split by a shuffle seeded with ``seed``.

    The result depends only on the set of ids, the ratios and the seed: the ids are
    sorted first, so the order in which they were found does not matter.
    """
    ids = sorted(video_ids, key=natural_key)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_train, n_val, _ = split_counts(len(ids), ratios)
    assignment = {}
    for rank, i in enumerate(order):
        assignment[ids[i]] = (
            "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
        )
    return assignment
