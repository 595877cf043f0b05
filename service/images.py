"""Images for a model: decoded with limits, then resized and scaled as the model's metadata and config say.

The preprocessing is Triton's image_client's: convert to RGB (3 channels) or L (1 channel), resize to the
input's W x H (stretched, not cropped) with Pillow's BILINEAR filter (antialiased when shrinking), scale the
pixels (``NONE``; ``INCEPTION`` x/127.5 - 1; ``VGG`` minus the channel means 123, 117, 104, or 128 for gray),
cast to the input's datatype and lay out channels first (NCHW) or last (NHWC). Two additions: EXIF orientation
is applied (the image is read the way a browser shows it), and a JPEG is decoded in draft mode at the
smallest 1/2, 1/4 or 1/8 scale that is still at least W x H, which makes large photos several times faster.
Scaling is computed in float32 and then cast (image_client scales FP16 inputs in FP16).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from service.errors import BadRequest
from service.protocol.codecs import base64_bytes
from service.protocol.metadata import ModelInfo
from service.protocol.tensors import NUMPY_DTYPES, Tensor
from service.settings import ImageScaling

Array = npt.NDArray[Any]

FORMATS = ("JPEG", "PNG", "WEBP")
_DATATYPES = ("FP32", "FP16", "UINT8")
_VGG_MEANS = {1: (128.0,), 3: (123.0, 117.0, 104.0)}
_ORIENTATION_TAG = 0x0112
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
# What Pillow raises on a header or a data stream it cannot read.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)


@dataclass(frozen=True, slots=True)
class ImageInput:
    """How a model takes images: its input's name, datatype, layout, size, colours and pixel scaling."""

    name: str
    datatype: str
    channels_first: bool
    channels: int
    height: int
    width: int
    scaling: ImageScaling
    max_batch_size: int  # 0: the model takes one image per call
    leading_one: bool = False  # a non-batching model whose input is [1, C, H, W] or [1, H, W, C]

    @property
    def mode(self) -> str:
        """The Pillow mode the pixels are converted to."""
        return "L" if self.channels == 1 else "RGB"


def image_input(info: ModelInfo, scaling: Mapping[str, ImageScaling]) -> ImageInput:
    """The model's one image input, read from its metadata and config; 400 naming why it has none.

    ``scaling`` (the ``IMAGE_SCALING`` setting) overrides the config's ``image_scaling`` parameter."""
    model = info.metadata.name
    required = [t for t in info.metadata.inputs if t.name not in info.optional_inputs]
    if len(required) != 1:
        names = ", ".join(repr(t.name) for t in required) or "none"
        raise BadRequest(
            f"model {model!r} takes {len(required)} inputs ({names}); images need exactly one image input"
        )
    spec = required[0]
    where = f"input {spec.name!r} of model {model!r}"
    batched = info.max_batch_size > 0
    dims = spec.shape[1:] if batched else spec.shape
    leading_one = not batched and len(dims) == 4 and dims[0] == 1
    if leading_one:
        dims = dims[1:]
    if len(dims) != 3:
        raise BadRequest(
            f"{where} has shape {spec.shape}; an image input is [C, H, W] or [H, W, C]"
            + (" after the batch dimension" if batched else "")
        )
    if spec.datatype not in _DATATYPES:
        raise BadRequest(f"{where} is {spec.datatype}; images become FP32, FP16 or UINT8 tensors")
    channels_first = _channels_first(info.input_formats.get(spec.name, "FORMAT_NONE"), dims, where)
    channels, height, width = (dims[0], dims[1], dims[2]) if channels_first else (dims[2], dims[0], dims[1])
    if channels not in (1, 3):
        raise BadRequest(f"{where} has {channels} channels; images have 1 (grayscale) or 3 (RGB)")
    if height <= 0 or width <= 0:
        raise BadRequest(f"{where} has a free height or width ({spec.shape}); images need a fixed size")
    chosen = scaling.get(model) or info.parameters.get("image_scaling", "NONE").strip().upper() or "NONE"
    if chosen not in get_args(ImageScaling):
        raise BadRequest(f"model {model!r} sets image_scaling {chosen!r}; expected NONE, INCEPTION or VGG")
    if spec.datatype == "UINT8" and chosen != "NONE":
        raise BadRequest(
            f"{where} is UINT8, which cannot hold {chosen}-scaled pixels; its scaling must be NONE"
        )
    return ImageInput(
        name=spec.name,
        datatype=spec.datatype,
        channels_first=channels_first,
        channels=channels,
        height=height,
        width=width,
        scaling=chosen,  # type: ignore[arg-type]  # checked against ImageScaling above
        max_batch_size=info.max_batch_size,
        leading_one=leading_one,
    )


def _channels_first(format_name: str, dims: Sequence[int], where: str) -> bool:
    if format_name == "FORMAT_NCHW":
        return True
    if format_name == "FORMAT_NHWC":
        return False
    # No format in the config: the shape tells when exactly one end looks like a channel count.
    first, last = dims[0] in (1, 3), dims[2] in (1, 3)
    if first != last:
        return first
    raise BadRequest(
        f"{where} has shape {list(dims)} and no format; set FORMAT_NCHW or FORMAT_NHWC in its config"
    )


def check_image_count(count: int, limit: int, field: str = "images") -> None:
    """Refuse a request with more images than the configured limit."""
    if count > limit:
        raise BadRequest(f"{field}: {count} images; at most {limit} are taken per request")


def decode_base64(text: str, field: str) -> bytes:
    """The bytes of a base64 image, with or without a ``data:image/...;base64,`` prefix."""
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise BadRequest(f"{field}: a data URL must be base64 (data:image/jpeg;base64,...)")
    return base64_bytes(text, field)


def load_image(data: bytes, target: ImageInput, field: str, max_pixels: int) -> Array:
    """One image as the model's input tensor without the batch dimension. 400 when it is not a JPEG, PNG
    or WebP image, is truncated or corrupt, or declares more than ``max_pixels`` (refused from the header)."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise BadRequest(f"{field}: not a JPEG, PNG or WebP image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own backstop (its MAX_IMAGE_PIXELS); ours below is normally the lower one.
        raise BadRequest(f"{field}: the image declares more than {max_pixels} pixels") from None
    except _DECODE_ERRORS as exc:
        raise BadRequest(f"{field}: the image header is corrupt ({exc})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadRequest(
                f"{field}: {width}x{height} is {width * height} pixels, over the limit of {max_pixels}"
            )
        if image.format == "JPEG":
            # The EXIF of a JPEG is read with its header; a quarter turn swaps the sides the draft must keep.
            turned = _orientation(image) in _SWAPS_SIDES
            image.draft(
                target.mode, (target.height, target.width) if turned else (target.width, target.height)
            )
        try:
            image.load()
        except _DECODE_ERRORS as exc:
            raise BadRequest(f"{field}: the {image.format} data is truncated or corrupt ({exc})") from None
        pixels = _resized(image, target, field)
    return _scaled(pixels, target)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except _DECODE_ERRORS:
        # Broken EXIF does not spoil the pixels (browsers show such photos too): read them as stored.
        return 1


def _resized(image: Image.Image, target: ImageInput, field: str) -> Array:
    orientation = _orientation(image)
    try:
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA")  # palette transparency: Pillow wants RGBA as the step between
        if image.mode != target.mode:
            image = image.convert(target.mode)
    except ValueError as exc:
        raise BadRequest(f"{field}: {image.mode} pixels cannot be read as {target.mode} ({exc})") from None
    transpose = _TRANSPOSES.get(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    size = (target.width, target.height)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image)


def _scaled(pixels: Array, target: ImageInput) -> Array:
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if target.channels_first:
        # Transposing the uint8 pixels is the cheap copy; the float array is then born contiguous.
        pixels = pixels.transpose(2, 0, 1)
    if target.datatype == "UINT8":
        out = np.ascontiguousarray(pixels)
    else:
        out = pixels.astype(np.float32, order="C")
        if target.scaling == "INCEPTION":
            out /= np.float32(127.5)
            out -= np.float32(1.0)
        elif target.scaling == "VGG":
            means = np.asarray(_VGG_MEANS[target.channels], dtype=np.float32)
            out -= means.reshape(-1, 1, 1) if target.channels_first else means
        if target.datatype != "FP32":
            out = out.astype(NUMPY_DTYPES[target.datatype])
    return out[np.newaxis] if target.leading_one else out


def call_inputs(arrays: Sequence[Array], target: ImageInput) -> list[list[Tensor]]:
    """The inputs of each Triton call: batches of up to ``max_batch_size`` images, or one image a call."""
    if target.max_batch_size > 0:
        step = target.max_batch_size
        return [
            [Tensor(target.name, target.datatype, np.stack(arrays[start : start + step]))]
            for start in range(0, len(arrays), step)
        ]
    return [[Tensor(target.name, target.datatype, array)] for array in arrays]
