"""Write frame sequences as animations (GIF, MP4) and lay clips side by side.

GIFs are written with Pillow: loop forever, no palette optimisation, one adaptive
palette per frame (smoke frames have few colours, so pixel values stay close). Pillow
merges a frame that is pixel-identical to the one before it into that frame's duration:
the animation plays the same, but a GIF of a video that stands still has fewer frames.
MP4s are written with PyAV: H.264 (libx264) when FFmpeg has it, MPEG-4 part 2 otherwise,
yuv420p; frames with an odd height or width are padded with black to even sizes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from framecast.data.sources import is_grey
from framecast.errors import ConfigError
from framecast.utils import atomic_path

#: Animation formats :func:`write_video` writes, by file suffix.
VIDEO_FORMATS = (".gif", ".mp4")

#: Grey of the gaps between tiled clips (smoke frames are black-backed).
GAP_GREY = 40


def check_video_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if its suffix is a format :func:`write_video` writes, else ConfigError."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_FORMATS:
        suffix = path.suffix or "(no suffix)"
        raise ConfigError(
            f"{path}: cannot write a video with suffix {suffix}; "
            f"expected one of {', '.join(VIDEO_FORMATS)}"
        )
    return path


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) RGB or (T, H, W, 1) grey uint8 -> contiguous (T, H, W, 3) RGB."""
    frames = np.asarray(frames)
    if (
        frames.ndim != 4
        or frames.shape[-1] not in (1, 3)
        or frames.dtype != np.uint8
        or not len(frames)
    ):
        raise ValueError(
            f"frames must be a non-empty (T, H, W, 3) or greyscale (T, H, W, 1) uint8 array, "
            f"got {frames.dtype} of shape {frames.shape}"
        )
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 8) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 RGB to ``path`` (.gif or .mp4), atomically.

    Grey frames ((T, H, W, 1), or RGB with R = G = B) make a greyscale GIF (a palette of
    greys only, so quantisation cannot tint them); MP4 stores them as R = G = B.

    Raises :class:`ConfigError` for another suffix, before anything is written.
    """
    path = check_video_path(path)
    frames = _check_frames(frames)
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            _write_gif(frames, tmp, fps)
        else:
            _write_mp4(frames, tmp, fps)
    return path


def _write_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    from PIL import Image

    if is_grey(frames):  # mode L: GIF's palette holds greys only, so no tint can appear
        images = [
            Image.fromarray(np.ascontiguousarray(frame[..., 0]), mode="L") for frame in frames
        ]
    else:
        images = [Image.fromarray(frame, mode="RGB") for frame in frames]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(10, round(1000 / fps)),  # milliseconds; GIF stores centiseconds
        loop=0,
        optimize=False,
        disposal=1,  # keep each frame: every frame covers the whole canvas anyway
    )


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    import av

    _, height, width, _ = frames.shape
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:  # yuv420p needs even sizes
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width + pad_w, height + pad_h
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "16", "preset": "medium"}
        else:
            stream.bit_rate = 4_000_000
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():  # flush
            container.mux(packet)


def tile_videos(
    videos: Sequence[np.ndarray], labels: Sequence[str] | None = None, gap: int = 2
) -> np.ndarray:
    """Clips side by side: n × (T, H, W_i, 3) uint8 -> (T, H [+ label bar], ΣW_i + gap·(n-1), 3).

    All clips need the same number of frames and height. With ``labels`` (one per clip),
    a bar above each clip names it.
    """
    if not videos:
        raise ValueError("tile_videos needs at least one video")
    videos = [_check_frames(v) for v in videos]
    length, height = videos[0].shape[:2]
    for i, video in enumerate(videos):
        if video.shape[:2] != (length, height):
            raise ValueError(
                f"video {i} is {video.shape[0]} frames of height {video.shape[1]}; "
                f"video 0 is {length} frames of height {height}: tiled clips must match"
            )
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"{len(labels)} labels for {len(videos)} videos")
    width = sum(v.shape[2] for v in videos) + gap * (len(videos) - 1)
    canvas = np.full((length, height, width, 3), GAP_GREY, dtype=np.uint8)
    x = 0
    for video in videos:
        canvas[:, :, x : x + video.shape[2]] = video
        x += video.shape[2] + gap
    if labels:
        bar = _label_bar(labels, [v.shape[2] for v in videos], gap)
        canvas = np.concatenate([np.broadcast_to(bar, (length, *bar.shape)), canvas], axis=1)
    return np.ascontiguousarray(canvas)


def _label_bar(
    labels: Sequence[str], widths: Sequence[int], gap: int, height: int = 12
) -> np.ndarray:
    """(height, ΣW + gaps, 3) uint8: each label written over its clip, white on dark grey."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (sum(widths) + gap * (len(widths) - 1), height), (GAP_GREY,) * 3)
    x = 0
    for label, w in zip(labels, widths):
        cell = Image.new("RGB", (w, height), (GAP_GREY,) * 3)  # clips text to its column
        ImageDraw.Draw(cell).text((2, 1), label, fill=(255, 255, 255))
        image.paste(cell, (x, 0))
        x += w + gap
    return np.asarray(image)
