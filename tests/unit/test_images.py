"""Image decoding with limits, preprocessing derived from model metadata, top-k parsing, multipart framing
(no network). Pixels are compared with ``tests.image_reference``, an independent image_client rewrite."""

from __future__ import annotations

import base64
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from service.errors import BadRequest, UpstreamError
from service.images import ImageInput, call_inputs, check_image_count, decode_base64, image_input, load_image
from service.protocol.classification import classification_output, encode_image_results, parse_classes
from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.protocol.multipart import parse_form
from service.protocol.tensors import InferResult, Tensor
from service.settings import Settings
from tests.image_reference import bomb_png, encode, jpeg, photo, reference_tensor

LIMIT = 40_000_000


def model(
    name,
    inputs,
    outputs=(("OUT", "FP32", [10]),),
    *,
    max_batch_size=0,
    formats=None,
    scaling=None,
    labelled=("OUT",),
):
    return ModelInfo(
        metadata=ModelMetadata(
            name=name,
            inputs=[TensorMetadata(name=n, datatype=d, shape=s) for n, d, s in inputs],
            outputs=[TensorMetadata(name=n, datatype=d, shape=s) for n, d, s in outputs],
        ),
        max_batch_size=max_batch_size,
        input_formats=formats or {},
        parameters={"image_scaling": scaling} if scaling else {},
        labelled_outputs=frozenset(labelled),
    )


DENSENET = model(
    "densenet_onnx",
    [("data_0", "FP32", [3, 224, 224])],
    [("fc6_1", "FP32", [1000])],
    formats={"data_0": "FORMAT_NCHW"},
    scaling="INCEPTION",
    labelled=("fc6_1",),
)
BATCHED = model(
    "classifier_batched",
    [("INPUT", "FP32", [-1, 3, 64, 64])],
    [("PROBS", "FP32", [-1, 10])],
    max_batch_size=8,
    formats={"INPUT": "FORMAT_NCHW"},
    scaling="VGG",
    labelled=("PROBS",),
)
NHWC = model(
    "nhwc_uint8",
    [("image", "UINT8", [-1, 96, 128, 3])],
    [("scores", "FP32", [-1, 5])],
    max_batch_size=4,
    formats={"image": "FORMAT_NHWC"},
    scaling="NONE",
    labelled=("scores",),
)
GRAY = model(
    "gray_fp16",
    [("pixels", "FP16", [1, 32, 32])],
    [("logits", "FP32", [4])],
    formats={"pixels": "FORMAT_NCHW"},
    scaling="NONE",
    labelled=("logits",),
)


# -- what the model takes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "want"),
    [
        (DENSENET, ImageInput("data_0", "FP32", True, 3, 224, 224, "INCEPTION", 0)),
        (BATCHED, ImageInput("INPUT", "FP32", True, 3, 64, 64, "VGG", 8)),
        (NHWC, ImageInput("image", "UINT8", False, 3, 96, 128, "NONE", 4)),
        (GRAY, ImageInput("pixels", "FP16", True, 1, 32, 32, "NONE", 0)),
        # No format in the config: the shape tells; no image_scaling: NONE.
        (model("m", [("x", "FP32", [224, 200, 3])]), ImageInput("x", "FP32", False, 3, 224, 200, "NONE", 0)),
        (
            model("m", [("x", "FP32", [1, 3, 8, 8])]),
            ImageInput("x", "FP32", True, 3, 8, 8, "NONE", 0, leading_one=True),
        ),
    ],
    ids=["densenet", "batched", "nhwc", "gray", "shape-nhwc", "leading-one"],
)
def test_image_input_comes_from_the_model(info, want):
    assert image_input(info, {}) == want


def test_the_scaling_setting_overrides_the_config():
    settings = Settings(image_scaling="densenet_onnx=vgg, other=NONE")
    assert settings.image_scaling == {"densenet_onnx": "VGG", "other": "NONE"}
    assert image_input(DENSENET, settings.image_scaling).scaling == "VGG"
    assert image_input(BATCHED, settings.image_scaling).scaling == "VGG"  # not named: its config's


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (
            model("text", [("TEXT", "BYTES", [-1])]),
            "input 'TEXT' of model 'text' has shape [-1]; an image input is [C, H, W] or [H, W, C]",
        ),
        (
            model("two", [("a", "FP32", [3, 8, 8]), ("b", "FP32", [3, 8, 8])]),
            "model 'two' takes 2 inputs ('a', 'b'); images need exactly one image input",
        ),
        (model("i", [("x", "INT32", [3, 8, 8])]), "input 'x' of model 'i' is INT32; images become FP32"),
        (model("c", [("x", "FP32", [4, 8, 8])], formats={"x": "FORMAT_NCHW"}), "has 4 channels"),
        (model("f", [("x", "FP32", [3, -1, -1])], formats={"x": "FORMAT_NCHW"}), "free height or width"),
        (model("a", [("x", "FP32", [3, 8, 3])]), "has shape [3, 8, 3] and no format; set FORMAT_NCHW"),
        (model("u", [("x", "UINT8", [8, 8, 3])], scaling="VGG"), "is UINT8, which cannot hold VGG-scaled"),
        (model("s", [("x", "FP32", [8, 8, 3])], scaling="IMAGENET"), "sets image_scaling 'IMAGENET'"),
    ],
)
def test_a_model_without_one_image_input_is_refused_saying_why(info, message):
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        image_input(info, {})


# -- decoding and preprocessing against the independent reference ---------------------------------------


# densenet's image input written out as its config states it, not derived by image_input: the tests that
# use it expect pixels independently of the code under test.
DENSENET_AS_CONFIGURED = {
    "channels": 3,
    "height": 224,
    "width": 224,
    "datatype": "FP32",
    "scaling": "INCEPTION",
    "channels_first": True,
}


def reference_for(data: bytes, target) -> np.ndarray:
    """The independent reference's tensor for ``data``, at the input ``target`` describes."""
    return reference_tensor(
        data,
        channels=target.channels,
        height=target.height,
        width=target.width,
        datatype=target.datatype,
        scaling=target.scaling,
        channels_first=target.channels_first,
    )


@pytest.mark.parametrize("info", [DENSENET, BATCHED, NHWC, GRAY], ids=lambda i: i.metadata.name)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_pixels_match_the_reference(info, fmt):
    target = image_input(info, {})
    data = encode(photo(300, 200, seed=3), fmt)
    got = load_image(data, target, "image", LIMIT)
    want = reference_for(data, target)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def cmyk_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("CMYK").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


JPEG_KINDS = {
    "baseline 4:2:0": lambda p: encode(p, "JPEG", quality=90),
    "progressive": lambda p: encode(p, "JPEG", quality=85, progressive=True),
    "4:4:4": lambda p: encode(p, "JPEG", quality=95, subsampling=0),
    "4:2:2": lambda p: encode(p, "JPEG", quality=80, subsampling=1),
    "grayscale": lambda p: encode(p[:, :, 0], "JPEG"),
    "CMYK": cmyk_jpeg,  # Adobe's inverted CMYK, converted to RGB by Pillow
}


@pytest.mark.parametrize("info", [DENSENET, BATCHED, GRAY], ids=lambda i: i.metadata.name)
@pytest.mark.parametrize("kind", JPEG_KINDS)
@pytest.mark.parametrize("size", [(640, 480), (1001, 667), (97, 61)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_kind_of_jpeg_matches_pillows_draft_decode(info, kind, size):
    # GIVEN JPEGs decoded at 1/1 to 1/8 scale (odd sizes: the scaled sides round up), in RGB or gray
    target = image_input(info, {})
    data = JPEG_KINDS[kind](photo(*size, seed=5))
    want = reference_for(data, target)
    # THEN the tensor is the reference's, bit for bit: a faster decoder must keep scale, IDCT and upsampling
    np.testing.assert_array_equal(load_image(data, target, "image", LIMIT), want)


def test_a_jpeg_libjpeg_warns_about_is_decoded_as_pillow_decodes_it():
    # GIVEN a JPEG with 50 bytes of its scan overwritten: libjpeg warns, Pillow decodes it anyway
    data = bytearray(jpeg(seed=3))
    data[len(data) // 2 : len(data) // 2 + 50] = b"\xff\x00" * 25
    want = reference_tensor(bytes(data), **DENSENET_AS_CONFIGURED)
    # THEN it is accepted with Pillow's pixels (a stricter decoder, e.g. simplejpeg's, would refuse it)
    np.testing.assert_array_equal(load_image(bytes(data), image_input(DENSENET, {}), "image", LIMIT), want)


def test_resize_orientation_is_height_by_width():
    # GIVEN a 256x192 picture whose left half is red and right half blue, and the NHWC input H=96, W=128
    pixels = np.zeros((192, 256, 3), np.uint8)
    pixels[:, :128, 0] = 255
    pixels[:, 128:, 2] = 255
    got = load_image(encode(pixels, "PNG"), image_input(NHWC, {}), "image", LIMIT)
    # THEN the tensor is [96, 128, 3] with red on the left and blue on the right
    assert got.shape == (96, 128, 3)
    assert (got[:, :60, 0] == 255).all() and (got[:, :60, 2] == 0).all()
    assert (got[:, 68:, 2] == 255).all() and (got[:, 68:, 0] == 0).all()


def test_exif_orientation_is_applied():
    # GIVEN a picture stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view)
    pixels = np.zeros((128, 96, 3), np.uint8)  # stored 96 wide, 128 high: red on top, blue below
    pixels[:64, :, 0] = 255
    pixels[64:, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(pixels, "JPEG", quality=95, exif=exif.tobytes())
    got = load_image(data, image_input(NHWC, {}), "image", LIMIT).astype(int)
    # THEN it is read as viewed: 128 wide, red (the stored top) on the right
    assert got[:, 100:, 0].mean() > 200 and got[:, 100:, 2].mean() < 50
    assert got[:, :28, 2].mean() > 200 and got[:, :28, 0].mean() < 50


def test_jpeg_draft_decoding_is_close_to_a_full_decode():
    data = jpeg(1280, 960, seed=1)
    target = image_input(DENSENET, {})
    got = load_image(data, target, "image", LIMIT)
    full = reference_tensor(data, **DENSENET_AS_CONFIGURED, draft=False)
    # A 1/4-scale DCT decode then bilinear, against a full decode then bilinear: a few levels out of 255.
    assert np.abs(got - full).mean() < 2 / 127.5


def palette_png(image: Image.Image) -> bytes:
    # Saved from the image itself: a numpy round trip of a "P" image would keep only its indices ("L").
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_grayscale_and_palette_and_alpha_images_are_converted(mode):
    pixels = photo(64, 64, 2)
    data = {
        "RGBA": lambda: encode(np.dstack([pixels, np.full((64, 64), 128, np.uint8)]), "PNG"),
        "L": lambda: encode(pixels[:, :, 0], "PNG"),
        "P": lambda: palette_png(Image.fromarray(pixels).convert("P")),
    }[mode]()
    assert Image.open(io.BytesIO(data)).mode == mode
    assert load_image(data, image_input(BATCHED, {}), "image", LIMIT).shape == (3, 64, 64)
    assert load_image(data, image_input(GRAY, {}), "image", LIMIT).shape == (1, 32, 32)


# -- bad images ------------------------------------------------------------------------------------------


def test_non_image_bytes_are_refused():
    with pytest.raises(BadRequest, match=r"^images\[2\]: not a JPEG, PNG or WebP image$"):
        load_image(b"this is not an image", image_input(DENSENET, {}), "images[2]", LIMIT)


def test_other_image_formats_are_refused():
    with pytest.raises(BadRequest, match="not a JPEG, PNG or WebP image"):
        load_image(encode(photo(32, 32, 0), "GIF"), image_input(DENSENET, {}), "image", LIMIT)


def test_a_truncated_jpeg_is_refused():
    data = jpeg(seed=2)
    with pytest.raises(BadRequest, match=r"^image: the JPEG data is truncated or corrupt"):
        load_image(data[: len(data) // 2], image_input(DENSENET, {}), "image", LIMIT)


def test_a_truncated_progressive_jpeg_is_refused():
    data = encode(photo(640, 480, 6), "JPEG", progressive=True)
    with pytest.raises(BadRequest, match=r"^images\[0\]: the JPEG data is truncated or corrupt"):
        load_image(data[: len(data) // 2], image_input(DENSENET, {}), "images[0]", LIMIT)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(jpeg(64, 48))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (65_500, 65_500, r"^image: the image declares more than 40000000 pixels$"),
        (8_000, 8_000, r"^image: 8000x8000 is 64000000 pixels, over the limit of 40000000$"),
        (0, 0, r"^image: not a JPEG, PNG or WebP image$"),
    ],
)
def test_a_jpeg_header_with_absurd_dimensions_is_refused_before_decoding(width, height, message):
    began = time.perf_counter()
    with pytest.raises(BadRequest, match=message):
        load_image(jpeg_declaring(width, height), image_input(DENSENET, {}), "image", LIMIT)
    assert time.perf_counter() - began < 2  # from the header: a 65500x65500 decode would take minutes


def test_a_decompression_bomb_is_refused_from_its_header():
    # GIVEN a ~50 kB PNG declaring 20000 x 20000 pixels
    data = bomb_png()
    assert len(data) < 100_000
    began = time.perf_counter()
    # THEN it is refused without being decoded (decoding it would take seconds and gigabytes)
    with pytest.raises(BadRequest, match=r"^image: the image declares more than 40000000 pixels$"):
        load_image(data, image_input(DENSENET, {}), "image", LIMIT)
    assert time.perf_counter() - began < 2  # milliseconds from the header; decoding would take seconds


def test_the_pixel_limit_is_ours_below_pillows():
    # GIVEN a 5000 x 5000 PNG (under Pillow's own limit) and a 20 M pixel limit
    data = bomb_png(5000, 5000)
    with pytest.raises(
        BadRequest, match=r"^image: 5000x5000 is 25000000 pixels, over the limit of 20000000$"
    ):
        load_image(data, image_input(DENSENET, {}), "image", 20_000_000)


def test_base64_images():
    data = jpeg(64, 48)
    assert decode_base64(base64.b64encode(data).decode(), "image") == data
    assert decode_base64("data:image/jpeg;base64," + base64.b64encode(data).decode(), "image") == data
    with pytest.raises(BadRequest, match=r"^images\[1\]: not valid base64"):
        decode_base64("not base64!", "images[1]")
    with pytest.raises(BadRequest, match="a data URL must be base64"):
        decode_base64("data:image/jpeg,abc", "image")


def test_image_count_limit():
    check_image_count(3, 3)
    with pytest.raises(BadRequest, match=r"^images: 4 images; at most 3 are taken per request$"):
        check_image_count(4, 3)


# -- batching --------------------------------------------------------------------------------------------


def test_batches_of_at_most_max_batch_size():
    arrays = [np.full((3, 64, 64), i, np.float32) for i in range(10)]
    calls = call_inputs(arrays, image_input(BATCHED, {}))
    assert [call[0].shape for call in calls] == [[8, 3, 64, 64], [2, 3, 64, 64]]
    assert [int(v) for call in calls for v in call[0].array[:, 0, 0, 0]] == list(range(10))
    single = call_inputs(arrays[:3], image_input(DENSENET, {}))
    assert [call[0].shape for call in single] == [[3, 64, 64]] * 3


# -- top-k -----------------------------------------------------------------------------------------------


def test_top_k_strings_are_parsed():
    array = np.array([[b"0.9:281:tabby, tabby cat", b"0.05:3:a:b"], [b"1.5:7", b"-2:0:x"]], dtype=object)
    assert parse_classes(Tensor("PROBS", "BYTES", array)) == [
        [
            {"label": "tabby, tabby cat", "index": 281, "score": 0.9},
            {"label": "a:b", "index": 3, "score": 0.05},
        ],
        [{"label": "", "index": 7, "score": 1.5}, {"label": "x", "index": 0, "score": -2.0}],
    ]
    with pytest.raises(UpstreamError, match="not 'score:index:label'"):
        parse_classes(Tensor("PROBS", "BYTES", np.array([b"garbage"], dtype=object)))


def test_top_k_bounds_and_labels():
    assert classification_output(DENSENET, 1000).class_count == 1000
    assert classification_output(BATCHED, 10).name == "PROBS"
    with pytest.raises(
        BadRequest, match=r"^top_k: must be between 1 and 10 \(the classes of output 'PROBS'\)"
    ):
        classification_output(BATCHED, 11)
    with pytest.raises(BadRequest, match="output 'OUT' of model 'm' has no labels"):
        classification_output(model("m", [("x", "FP32", [3, 8, 8])], labelled=()), 1)


def test_raw_outputs_are_split_per_image():
    result = InferResult(
        "m", "1", "", [Tensor("PROBS", "FP32", np.arange(20, dtype=np.float32).reshape(2, 10))]
    )
    body = encode_image_results([result, result], batched=True)
    assert len(body["results"]) == 4
    assert body["results"][1]["outputs"][0]["shape"] == [10]
    assert list(body["results"][1]["outputs"][0]["data"]) == list(range(10, 20))


# -- multipart -------------------------------------------------------------------------------------------


def test_multipart_parts_come_back_byte_for_byte():
    # GIVEN a form encoded by httpx (an independent encoder) with binary files holding CR, LF and dashes
    files = [
        ("images", ("a.jpg", jpeg(64, 48, seed=4), "image/jpeg")),
        ("images", ("b.bin", b"\r\n--\r\n\r\n--x", "application/octet-stream")),
        ("note", (None, "hello")),
    ]
    request = httpx.Request("POST", "http://x/infer", files=files)
    parts = parse_form(request.read(), request.headers["content-type"], max_parts=16)
    assert [(p.name, p.filename, p.content_type) for p in parts] == [
        ("images", "a.jpg", "image/jpeg"),
        ("images", "b.bin", "application/octet-stream"),
        ("note", None, ""),
    ]
    assert parts[0].data == files[0][1][1]
    assert parts[1].data == b"\r\n--\r\n\r\n--x"
    assert parts[2].data == b"hello"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"--b\r\nxx", "multipart/form-data; boundary=b", "truncated, the closing boundary is missing"),
        (b"nothing", "multipart/form-data; boundary=b", "never appears"),
        (b"", "multipart/form-data", "needs a boundary"),
    ],
)
def test_broken_multipart_is_refused(body, content_type, message):
    with pytest.raises(BadRequest, match=message):
        parse_form(body, content_type, max_parts=16)


def empty_parts(count: int) -> bytes:
    part = b'content-disposition: form-data; name="images"\r\n\r\n'
    return b"--b\r\n" + b"\r\n--b\r\n".join([part] * count) + b"\r\n--b--\r\n"


def test_multipart_stops_at_the_first_part_past_the_limit():
    # GIVEN the probed 10 MB body of 163,934 empty parts (reading them all took 3.6 s)
    body = empty_parts(163_934)
    began = time.perf_counter()
    # THEN it is refused after the limit's parts, the rest never read
    with pytest.raises(BadRequest, match=r"^multipart body: more than 17 parts; the rest is not read$"):
        parse_form(body, "multipart/form-data; boundary=b", max_parts=17)
    assert time.perf_counter() - began < 0.5
    assert len(parse_form(empty_parts(17), "multipart/form-data; boundary=b", max_parts=17)) == 17
