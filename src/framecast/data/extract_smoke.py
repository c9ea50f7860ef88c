"""Raw smoke footage -> smoke on black: background subtraction, then a smoke-centred square crop.

The stages, each usable alone:

1. :func:`foreground_mask`: a per-pixel background model of the (static-camera) video -
   the temporal median, or OpenCV's MOG2 - and the pixels that differ from it by more
   than ``threshold`` in some channel, cleaned by a morphological opening (drops
   speckle noise) and closing (fills pinholes in the plume), with a square kernel.
2. The smoke pixels keep their colour (or their brightness, as grey smoke) on black.
3. :func:`best_square_window`: the square window, fixed for the whole video, that holds
   the most smoke pixels summed over all frames (ties: the one nearest the centre).

The median background assumes the smoke moves: a plume that sits still at one place
for most of the video becomes background there.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from framecast.errors import DataError


def _check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise DataError(
            f"expected frames (T, H, W, 3) uint8 with T >= 1, got {frames.shape} {frames.dtype}"
        )


def foreground_mask(
    frames: np.ndarray,
    background: Literal["median", "mog2"] = "median",
    threshold: int = 25,
    morph_size: int = 3,
) -> np.ndarray:
    """Foreground (smoke) mask of a video: (T, H, W, 3) uint8 -> (T, H, W) bool.

    Args:
        background: ``"median"`` (temporal median per pixel; deterministic) or
            ``"mog2"`` (OpenCV's Gaussian mixture, learnt over the whole video first,
            then applied frame by frame without further learning).
        threshold: minimum absolute difference from the background, 0..255, in any channel
            (median); the squared Mahalanobis threshold ``varThreshold`` (MOG2).
        morph_size: side of the square opening/closing kernel; 0 or 1 disables it.
    """
    _check_frames(frames)
    if background == "median":
        model = np.median(frames, axis=0).astype(np.int16)  # (H, W, 3)
        diff = np.abs(frames.astype(np.int16) - model).max(axis=3)
        mask = (diff > threshold).astype(np.uint8)
    elif background == "mog2":
        subtractor = cv2.createBackgroundSubtractorMOG2(
            history=len(frames), varThreshold=float(threshold), detectShadows=False
        )
        # Like the median: a colour is background where it is seen at least half the time
        # (OpenCV's default 0.9 lets a plume that passes by a quarter of the time in).
        subtractor.setBackgroundRatio(0.5)
        for frame in frames:
            subtractor.apply(frame)
        # Learning rate 0: classify every frame against the model of the whole video.
        mask = np.stack([subtractor.apply(frame, learningRate=0) > 0 for frame in frames]).astype(
            np.uint8
        )
    else:
        raise ValueError(f"background must be 'median' or 'mog2', got {background!r}")
    if morph_size > 1:
        # A square kernel: opening with a round one would also shave corners off the plume.
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (morph_size, morph_size))
        # Pad with background: OpenCV's default border would let closing glue any plume
        # within a pixel of the edge onto the edge.
        pad = morph_size
        for t in range(len(mask)):
            padded = cv2.copyMakeBorder(mask[t], pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            opened = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
            mask[t] = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, kernel)[pad:-pad, pad:-pad]
    return mask.astype(bool)


def best_square_window(counts: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left ``(top, left)`` of the ``size``×``size`` window of ``counts`` (H, W) with the
    largest sum; among equal sums the one whose centre is nearest the image centre."""
    height, width = counts.shape
    if not 1 <= size <= min(height, width):
        raise ValueError(f"window size {size} does not fit in {height}x{width}")
    integral = np.zeros((height + 1, width + 1), dtype=np.float64)
    integral[1:, 1:] = counts.cumsum(0).cumsum(1)
    sums = (
        integral[size:, size:]
        - integral[:-size, size:]
        - integral[size:, :-size]
        + integral[:-size, :-size]
    )  # (H - size + 1, W - size + 1): sum of the window with that top-left corner
    tops, lefts = np.nonzero(sums >= sums.max() - 1e-9)
    centre_offset = (tops - (height - size) / 2) ** 2 + (lefts - (width - size) / 2) ** 2
    best = int(np.argmin(centre_offset))
    return int(tops[best]), int(lefts[best])


def extract_smoke(
    frames: np.ndarray,
    background: Literal["median", "mog2"] = "median",
    threshold: int = 25,
    morph_size: int = 3,
    colour: Literal["rgb", "grey"] = "rgb",
    crop_size: int | None = None,
) -> np.ndarray:
    """Smoke on black, cropped to the smokiest square: (T, H, W, 3) -> (T, S, S, 3) uint8.

    ``S`` is ``crop_size`` or, by default, ``min(H, W)``. ``colour="grey"`` keeps each
    smoke pixel's brightness (BT.601 luma) in all three channels instead of its colour.
    See :func:`foreground_mask` for the other arguments. Resizing is left to the caller.
    """
    mask = foreground_mask(
        frames, background=background, threshold=threshold, morph_size=morph_size
    )
    if colour == "rgb":
        smoke = frames * mask[..., None]
    elif colour == "grey":
        luma = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])  # (T, H, W)
        smoke = np.repeat((luma * mask)[..., None], 3, axis=3)
    else:
        raise ValueError(f"colour must be 'rgb' or 'grey', got {colour!r}")
    size = min(frames.shape[1:3]) if crop_size is None else crop_size
    top, left = best_square_window(mask.sum(axis=0), size)
    return np.ascontiguousarray(smoke[:, top : top + size, left : left + size], dtype=np.uint8)
