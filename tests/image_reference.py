"""Deterministic test images and an independent reference of the image preprocessing.

``reference_tensor`` is Triton's image_client written out again in plain Pillow + numpy, kept apart from
``service.images`` on purpose: the tests compare the gateway with it, not with itself."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int) -> np.ndarray:
    """A photo-like RGB array: smooth gradients, a few blocks and some noise (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            255 * xs / max(width - 1, 1),
            255 * ys / max(height - 1, 1),
            128 + 100 * np.sin((xs + ys) / (7 + seed % 5)),
        ],
        axis=-1,
    )
    for _ in range(4):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        base[y0 : y0 + height // 3, x0 : x0 + width // 3] = rng.integers(0, 256, 3)
    base += rng.normal(0, 12, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, **options) -> bytes:
    """``pixels`` as a JPEG, PNG or WEBP file."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A deterministic photo-like JPEG."""
    return encode(photo(width, height, seed), "JPEG", quality=90)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels, written row by row: ~50 kB on disk,
    400 M pixels (over 1 GB as RGB) once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def reference_tensor(
    data: bytes,
    *,
    channels: int,
    height: int,
    width: int,
    datatype: str,
    scaling: str,
    channels_first: bool,
    draft: bool = True,
) -> np.ndarray:
    """The model input for one image, as Triton's image_client computes it (plus JPEG draft decoding)."""
    image = Image.open(io.BytesIO(data))
    mode = "L" if channels == 1 else "RGB"
    if draft and image.format == "JPEG":
        image.draft(mode, (width, height))
    image = image.convert(mode).resize((width, height), Image.BILINEAR)
    pixels = np.array(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if datatype == "UINT8":
        typed = pixels
    else:
        typed = pixels.astype(np.float32)
        if scaling == "INCEPTION":
            typed = typed / 127.5 - 1
        elif scaling == "VGG":
            typed = typed - np.array((128,) if channels == 1 else (123, 117, 104), dtype=np.float32)
        typed = typed.astype(np.float16 if datatype == "FP16" else np.float32)
    return np.transpose(typed, (2, 0, 1)) if channels_first else typed
