"""Decoding images to 8-bit RGB, the one pixel format every model in the project consumes.

Converting here, once, keeps grayscale scans, transparent logos and palette GIFs from reaching a
vision tower as 1- or 4-channel arrays. Transparent pixels are composited on white (the usual
page background of web images) rather than dropped, which would turn them black.

Truncated files are detected because Pillow refuses to decode them while
`PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is False (its default); code that sets it True accepts
grey-filled partial images everywhere, this module included.

Camera photos store pixels in sensor order with an EXIF Orientation tag; like photo viewers,
decoding applies it (`ImageOps.exif_transpose`), so a portrait photo reaches the model upright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from sugar.data.errors import ImageLoadError

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Return `image` as mode "RGB"; the same object when it already is.

    Grayscale and bilevel images are replicated to three channels, palette images expanded,
    alpha composited on white, 16-bit grayscale scaled to 8 bits. 32-bit integer and float
    images have no agreed intensity range, so they raise ValueError instead of being guessed at.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.uint32)
        eight_bit = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(eight_bit, mode="L").convert("RGB")
    if mode in {"I", "F"}:
        raise ValueError(
            f"image mode {mode!r} (32-bit integer or float pixels) has no defined 0-255 range; "
            "convert it to an 8- or 16-bit image first"
        )
    return image.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """Decode the whole file at `path` to an in-memory RGB image.

    EXIF orientation is applied. Raises ImageLoadError naming the file when it is missing, not
    an image, corrupt or truncated.
    """
    if not path.is_file():
        raise ImageLoadError(f"image file not found: {path}")
    try:
        with Image.open(path) as opened:
            opened.load()  # decodes every byte: this is where truncation is detected
            upright = ImageOps.exif_transpose(opened)  # a new image: it outlives the closed file
            rgb = to_rgb(upright)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageLoadError(f"cannot decode image file {path}: {error}") from error
    return rgb
