"""Short test videos made in the test: textures that pan, with shapes that move and a scene
cut every few seconds, so that each second's frame differs from the last. Written with PyAV
(FFmpeg), re-encoded, resized and trimmed as an evader would."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from consortium_client.hashvalues import VideoFrame, vpdq_value_format


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth random colour fields at three scales, like a photograph's large shapes and
    detail."""
    layers = []
    for cells, weight in ((4, 0.55), (13, 0.3), (41, 0.15)):
        small = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        big = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        layers.append(np.asarray(big, np.float32) * weight)
    return np.clip(sum(layers), 0, 255).astype(np.uint8)


def video_write(
    path: Path,
    *,
    seed: int,
    seconds: int = 20,
    fps: int = 12,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    scene_seconds: int = 4,
) -> Path:
    """A `seconds`-long video of `size`: each scene pans over its own texture, with a
    square that moves across it."""
    rng = np.random.default_rng(seed)
    width, height = size
    scenes = [_texture(rng, width * 2, height * 2) for _ in range(-(-seconds // scene_seconds))]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for number in range(seconds * fps):
            t = number / fps
            texture = scenes[int(t) // scene_seconds]
            x = int((width - 1) * (0.5 + 0.5 * np.sin(t * 0.7 + seed)))
            y = int((height - 1) * (0.5 + 0.5 * np.cos(t * 0.5 + seed)))
            picture = texture[y : y + height, x : x + width].copy()
            sx = int((width - 40) * (0.5 + 0.5 * np.sin(t * 1.3)))
            sy = int((height - 40) * (0.5 + 0.5 * np.cos(t * 1.1)))
            picture[sy : sy + 40, sx : sx + 40] = (255, 255 * (seed % 2), 0)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def video_transcode(
    source: Path,
    target: Path,
    *,
    codec: str = "mpeg4",
    size: tuple[int, int] | None = None,
    bit_rate: int = 300_000,
    trim_start: float = 0.0,
    trim_end: float = 0.0,
    container_format: str | None = None,
) -> Path:
    """Decode `source` and encode it again: another codec and bit rate, optionally resized,
    without its first `trim_start` and last `trim_end` seconds."""
    with av.open(str(source)) as given:
        stream = given.streams.video[0]
        duration = float(stream.frames / stream.average_rate) if stream.frames else None
        rate = stream.average_rate
        frames = [
            (float(frame.pts * stream.time_base), frame.to_ndarray(format="rgb24"))
            for frame in given.decode(stream)
        ]
    end = (duration or frames[-1][0] + 1 / float(rate)) - trim_end
    kept = [pixels for time, pixels in frames if trim_start - 1e-6 <= time < end - 1e-6]
    with av.open(str(target), "w", format=container_format) as container:
        out = container.add_stream(codec, rate=rate)
        height, width = kept[0].shape[:2]
        out.width, out.height = size or (width, height)
        out.pix_fmt = "yuv420p"
        out.bit_rate = bit_rate
        for pixels in kept:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if size is not None:
                frame = frame.reformat(width=size[0], height=size[1])
            for packet in out.encode(frame):
                container.mux(packet)
        for packet in out.encode():
            container.mux(packet)
    return target


def vpdq_synthetic(seed: int, frames: int) -> str:
    """A vpdq value of `frames` distinct frames of quality 90, different for each `seed`: a
    long value without a video to hash (each frame is 67 characters with its comma)."""
    return vpdq_value_format([VideoFrame(f"{seed:04x}{i:060x}", 90) for i in range(frames)])
