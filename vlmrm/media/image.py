"""Opening an image the way the Qwen-VL tooling sees it, in one place for training, evaluation and
scoring (see ``docs/fidelity.md``, "Images").

qwen-vl-utils' ``to_rgb`` composites an RGBA image on white (``convert("RGB")`` alone drops the
alpha channel, so transparent pixels take whatever colour they hold, usually black). PIL's
``convert`` clips 16-bit (``I;16``, ``I``) and float (``F``) pixels to 0..255 instead of scaling
them, which turns a 16-bit photograph nearly all white; here they are scaled linearly to 8 bits
from their type's full range (``v x 255 / 65535`` for 16-bit, ``v x 255`` for float in 0..1).
EXIF orientation is applied (``ImageOps.exif_transpose``), as a viewer shows the image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vlmrm.media.sampling import QWEN2_IMAGE_FACTOR

UINT16_MAX = 65535
"""Full scale of a 16-bit sample (``I;16`` PNG/TIFF); scaled to 8 bits as v x 255 / 65535."""

UINT8_MAX = 255
WHITE = (UINT8_MAX, UINT8_MAX, UINT8_MAX)
"""Background qwen-vl-utils' ``to_rgb`` composites transparent images on."""

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
"""Integer modes PIL clips to 0..255 on ``convert``; ``I`` (32-bit) is what PIL opens 16-bit PNGs as."""

FLOAT_MODE = "F"
"""32-bit float pixels, taken as 0..1 (values outside are clipped after scaling)."""

ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageLoadError(ValueError):
    """An image that cannot be opened, or that the processor would refuse."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit / float greyscale scaled (not clipped) to mode ``L``."""
    pixels = np.asarray(image, dtype=np.float64)
    scale = UINT8_MAX if image.mode == FLOAT_MODE else UINT8_MAX / UINT16_MAX
    return Image.fromarray(np.clip(np.rint(pixels * scale), 0, UINT8_MAX).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as qwen-vl-utils' ``to_rgb``: alpha composited on white; 16-bit / float scaled."""
    if image.mode in SIXTEEN_BIT_MODES or image.mode == FLOAT_MODE:
        image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def open_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """An 8-bit RGB image, EXIF orientation applied, from a path, raw bytes or a PIL image.

    Errors (missing file, undecodable bytes, over PIL's decompression-bomb limit
    ``Image.MAX_IMAGE_PIXELS``) are :class:`ImageLoadError` naming what failed.
    """
    try:
        if isinstance(source, Image.Image):
            return to_rgb(ImageOps.exif_transpose(source))
        opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with opened as image:
            return to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"over PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): {err}") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageLoadError(f"{type(err).__name__}: {err}") from err


def processor_size_problem(height: int, width: int, factor: int = QWEN2_IMAGE_FACTOR) -> str | None:
    """Why the Qwen-VL image processor would refuse an image of this size, or None.

    Calls the processor's own ``smart_resize`` (transformers' Qwen2-VL image processor, shared by
    Qwen2.5-VL and Qwen3-VL): an absolute aspect ratio over 200 raises there, mid-batch.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    if min(height, width) < 1:
        return f"degenerate size {width}x{height}"
    try:
        smart_resize(height, width, factor=factor)
    except ValueError as err:
        return f"{width}x{height}: {err} (the Qwen-VL processor refuses it)"
    return None
