"""Load one image file safely: any mode to RGB, EXIF-upright, centre-cropped, resized.

Whatever is wrong with a file becomes an :class:`ImageSkip` with a short reason, never
a crash: empty, not an image, truncated or corrupt, too large (decompression bombs are
bounded by pixel count *before* decoding), or a colour mode that cannot be converted.

This module imports neither torch nor the rest of facediff, so process-pool workers
start quickly.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facediff.files import raise_naming

#: File-name extensions ``prepare`` treats as images (lower case, with the dot).
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    }
)

#: The PIL formats those extensions hold: only these decoders ever see a file's bytes
#: (an EPS or PDF named ``.jpg`` must not reach PIL's Ghostscript-backed plugins).
#: (Multi-picture JPEGs from cameras open through the JPEG decoder.)
RASTER_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

#: Files larger than this are not read (a photo is a few MiB; the bound keeps a huge or
#: endless file from filling memory).
MAX_FILE_BYTES = 256 << 20

#: Alpha is composited over this neutral grey (not black, not white).
ALPHA_BACKGROUND = (128, 128, 128)

# Errors the PIL decoders raise for broken data (besides OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


class ImageSkip(Exception):
    """A file that cannot be used, with a short reason (``kind`` plus optional detail)."""

    def __init__(self, kind: str, detail: str | None = None) -> None:
        self.kind = kind
        self.reason = f"{kind} ({detail})" if detail else kind
        super().__init__(self.reason)


def _too_large(width: int, height: int) -> ImageSkip:
    return ImageSkip("too large", f"{width}×{height} pixels")


def _open_regular(path: Path, limit: int):
    """Open ``path`` for reading if it is a regular file of at most ``limit`` bytes.

    Links are followed, but only to a regular file: a FIFO, a device (``/dev/zero``)
    or a socket is refused before any read, and ``O_NONBLOCK`` keeps the open itself
    from waiting for a FIFO's writer.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ImageSkip("unreadable", e.strerror or type(e).__name__) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageSkip("not a regular file")
        if st.st_size > limit:
            raise ImageSkip("too large", f"{st.st_size} bytes")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or :class:`ImageSkip`."""
    with _open_regular(path, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ImageSkip("unreadable", e.strerror or type(e).__name__) from None
    if len(data) > limit:  # grew since it was opened
        raise ImageSkip("too large", f"over {limit} bytes")
    return data


def sha256_regular(path: Path, limit: int = MAX_FILE_BYTES, chunk: int = 1 << 20) -> str:
    """sha256 of a regular file of at most ``limit`` bytes, or :class:`ImageSkip`."""
    h, total = hashlib.sha256(), 0
    with _open_regular(path, limit) as f:
        try:
            while block := f.read(chunk):
                total += len(block)
                if total > limit:
                    raise ImageSkip("too large", f"over {limit} bytes")
                h.update(block)
        except OSError as e:
            raise ImageSkip("unreadable", e.strerror or type(e).__name__) from None
    return h.hexdigest()


def _open(data: bytes, max_pixels: int, formats: tuple[str, ...] = RASTER_FORMATS) -> Image.Image:
    """Open (not decode) an image, bounding its pixel count before any decoding."""
    if not all(f in Image.OPEN for f in formats):
        Image.init()  # registers the plugins PIL does not load up front (TIFF, WebP)
    with warnings.catch_warnings():
        # PIL's own bomb check warns, then errors, past Image.MAX_IMAGE_PIXELS: both skip.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=list(formats))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            pixels = re.search(r"\((\d+) pixels\)", str(e))
            raise ImageSkip("too large", f"{pixels.group(1)} pixels" if pixels else None) from None
        except UnidentifiedImageError:
            raise ImageSkip("not an image") from None
        except _DECODE_ERRORS:
            raise ImageSkip("truncated or corrupt") from None
    width, height = im.size
    if width * height > max_pixels:
        raise _too_large(width, height)
    if width < 1 or height < 1:
        raise ImageSkip("not an image")
    return im


def _load_pixels(im: Image.Image) -> None:
    """Decode every pixel now: a truncated, corrupt or bomb file fails here, as a skip."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except (*_DECODE_ERRORS, Image.DecompressionBombWarning):
        raise ImageSkip("truncated or corrupt") from None


def _decode(im: Image.Image, size: int) -> Image.Image:
    """Force the full decode (truncated files fail here) and make it upright."""
    if im.format == "JPEG":
        # Let the JPEG decoder downscale by 1/2, 1/4 or 1/8 while keeping >= size
        # (what Image.thumbnail does): much less to decode for big photos.
        im.draft(None, (size, size))
    _load_pixels(im)
    try:
        return ImageOps.exif_transpose(im)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        return im  # broken EXIF metadata: keep the pixels as stored


def _scaled_to_8bit(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale to 8-bit, scaled (not clipped).

    ``I;16*`` spans 0..65535. ``I`` holding 0..65535 (how 16-bit PNGs may load) is
    scaled the same way; ``F`` in 0..1 is scaled by 255; anything else is stretched
    from its minimum to its maximum.
    """
    a = np.asarray(im, dtype=np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode.startswith("I;16") or (im.mode == "I" and lo >= 0 and hi <= 65535):
        a = a / 257.0
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0
    else:
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited over :data:`ALPHA_BACKGROUND`."""
    if im.mode.startswith("I") or im.mode == "F":
        im = _scaled_to_8bit(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    try:
        if has_alpha:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return im if im.mode == "RGB" else im.convert("RGB")
    except ValueError:
        raise ImageSkip("unsupported colour mode", im.mode) from None


def square_resize(im: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square (never squash), then Lanczos-resize to ``size``×``size``.

    ``reducing_gap`` lets PIL first shrink by an integer factor with ``reduce()`` when
    the downscale is large, then finish with Lanczos.
    """
    width, height = im.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if width != height:  # crop first: resize(box=) would filter in pixels outside the box
        im = im.crop((left, top, left + side, top + side))
    return im.resize((size, size), Image.LANCZOS, reducing_gap=3.0)


def tensor_to_image(image) -> Image.Image:
    """A uint8 3×H×W tensor (model output, dataset image) as an RGB PIL image."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), "RGB")


def check_shape(width: int, height: int, min_side: int, max_aspect: float | None) -> None:
    """Refuse sources too small to be a face, or so elongated a centre crop is meaningless."""
    if min(width, height) < min_side:
        raise ImageSkip("too small", f"{width}×{height} pixels; the minimum side is {min_side}")
    if max_aspect is not None and max(width, height) > max_aspect * min(width, height):
        raise ImageSkip("extreme aspect ratio", f"{width}×{height} pixels")


def decode_image(
    data: bytes,
    size: int,
    max_pixels: int,
    *,
    min_side: int = 1,
    max_aspect: float | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Image bytes to an upright, centre-cropped ``size``×``size``×3 uint8 array, plus the
    source's ``(width, height)``."""
    if not data:
        raise ImageSkip("empty file")
    im = _open(data, max_pixels)
    source_size = im.size
    check_shape(*source_size, min_side, max_aspect)
    im = _decode(im, size)
    if im.width * im.height > max_pixels:  # EXIF transposes keep the count; be safe
        raise _too_large(im.width, im.height)
    return np.asarray(square_resize(to_rgb(im), size), dtype=np.uint8).copy(), source_size


def load_image(
    path: Path, size: int, max_pixels: int, *, min_side: int = 1, max_aspect: float | None = None
) -> np.ndarray:
    """Load ``path`` as a ``size``×``size``×3 uint8 array or raise :class:`ImageSkip`."""
    return _load(path, size, max_pixels, min_side, max_aspect)[0]


def _load(
    path: Path, size: int, max_pixels: int, min_side: int, max_aspect: float | None
) -> tuple[np.ndarray, tuple[int, int]]:
    return decode_image(
        read_regular(path), size, max_pixels, min_side=min_side, max_aspect=max_aspect
    )


def load_png_rgb(path: Path, max_pixels: int) -> Image.Image:
    """A PNG written by facediff (a sample), read back as RGB under the same guards as
    ``prepare``: a regular file, bounded size, PNG decoder only, pixel bound before decoding.
    """
    im = _open(read_regular(path), max_pixels, formats=("PNG",))
    _load_pixels(im)
    return to_rgb(im)


#: What :func:`process_file` returns: the array or a skip reason, and the source's smaller side.
Processed = tuple[np.ndarray | None, str | None, int]


def process_file(
    source: Path,
    dest: Path | None,
    size: int,
    max_pixels: int,
    min_side: int = 1,
    max_aspect: float | None = None,
) -> Processed:
    """Load ``source`` and, if ``dest`` is given, save it there as PNG.

    Returns ``(array, None, side)`` with an S×S×3 uint8 array and the source's smaller
    side in pixels, or ``(None, reason, 0)``.
    """
    try:
        array, (width, height) = _load(source, size, max_pixels, min_side, max_aspect)
    except ImageSkip as skip:
        return None, skip.reason, 0
    except Exception as e:  # a decoder bug on one hostile file must not stop the other 10,000
        return None, f"truncated or corrupt ({type(e).__name__})", 0
    if dest is not None:  # zlib level 1: ~35% less time than the default 6, ~6% larger files
        # A new file, never through a link: O_EXCL | O_NOFOLLOW.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            with os.fdopen(os.open(dest, flags, 0o666), "wb") as f:
                Image.fromarray(array, "RGB").save(f, format="PNG", compress_level=1)
        except OSError as e:  # a full disk: name the file (a write error names none)
            raise_naming(e, dest)
    return array, None, min(width, height)


def process_chunk(
    jobs: list[tuple[str, str | None]],
    size: int,
    max_pixels: int,
    min_side: int = 1,
    max_aspect: float | None = None,
) -> list[Processed]:
    """:func:`process_file` over ``(source, dest)`` pairs (one process-pool task)."""
    return [
        process_file(Path(src), Path(dst) if dst else None, size, max_pixels, min_side, max_aspect)
        for src, dst in jobs
    ]
