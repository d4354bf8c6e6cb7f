"""Drawing scenes with PIL.

Rendering is a pure function of the scene (the background texture seed is part of the scene),
so worker processes reproduce every image bit for bit and no random state crosses processes.
Shapes are drawn without anti-aliasing: every object pixel carries exactly the object's fill,
which keeps colour read-back in the ground-truth checks exact. Textures are smooth and faint so
PNGs stay small (a few KB) and backgrounds never look like an object colour.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from sugar.world.scene import Background, Scene

TEXTURE_AMPLITUDE = 12  # max +- deviation of a textured background from its base grey


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [0, 1], (ys, xs); cached because every image needs them."""
    coords = np.linspace(0.0, 1.0, size, dtype=np.float32)
    return coords[:, None], coords[None, :]


def _texture(background: Background, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float pattern in [-1, 1] for the background kind."""
    ys, xs = _unit_grid(size)
    kind = background.kind
    if kind == "gradient":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        return (np.float32(np.cos(angle)) * xs + np.float32(np.sin(angle)) * ys) * 2.0 - 1.0
    if kind == "stripes":
        angle, period = rng.uniform(0.0, np.pi), rng.uniform(0.08, 0.2)
        phase = (np.float32(np.cos(angle)) * xs + np.float32(np.sin(angle)) * ys) * np.float32(1.0 / period)
        return np.where(np.floor(phase) % 2 == 0, np.float32(1.0), np.float32(-1.0))
    if kind == "checks":
        period = np.float32(rng.uniform(0.1, 0.25))
        parity = (np.floor(xs / period) + np.floor(ys / period)) % 2
        return np.where(parity == 0, np.float32(1.0), np.float32(-1.0))
    if kind == "blotches":
        coarse = rng.uniform(0.0, 255.0, size=(5, 5)).astype(np.uint8)
        small = Image.fromarray(coarse, mode="L").resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(small, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
    raise ValueError(f"unknown background kind {kind!r}")


def render_background(background: Background, size: int) -> np.ndarray:
    """(size, size, 3) uint8 backdrop: the base colour plus a faint, smooth texture."""
    base = np.asarray(background.rgb, dtype=np.int16)
    if background.kind == "plain":
        return np.broadcast_to(base.astype(np.uint8), (size, size, 3)).copy()
    rng = np.random.default_rng(background.seed)
    pattern = _texture(background, size, rng)
    amplitude = TEXTURE_AMPLITUDE * rng.uniform(0.5, 1.0)
    # Offsets are small integers: look each channel up in a 256-entry table instead of doing
    # 3-channel arithmetic on every pixel.
    index = (np.rint(pattern * np.float32(amplitude)) + 128).astype(np.uint8)
    shifts = np.arange(256, dtype=np.int16) - 128
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    for channel in range(3):
        table = np.clip(base[channel] + shifts, 0, 255).astype(np.uint8)
        pixels[:, :, channel] = table[index]
    return pixels


def render_scene(scene: Scene, size: int | None = None) -> Image.Image:
    """Draw `scene` as an RGB image of `size` pixels (default: the scene's own image size)."""
    size = scene.image_size if size is None else size
    if size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    scale = size / scene.image_size
    image = Image.fromarray(render_background(scene.background, size), mode="RGB")
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        outline = obj.outline()
        if outline is None:
            x, y = obj.centre
            r = obj.radius
            box = [(x - r) * scale, (y - r) * scale, (x + r) * scale, (y + r) * scale]
            draw.ellipse(box, fill=obj.rgb)
        else:
            draw.polygon([(px * scale, py * scale) for px, py in outline], fill=obj.rgb)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding of `image`; deterministic for the same pixels (no timestamps or metadata)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)  # 30% faster than 6, files 30% larger
    return buffer.getvalue()
