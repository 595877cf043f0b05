"""Small ONNX graphs, built with ``onnx.helper``, that stand in for the production models locally.

Each builder takes a seed and returns the same bytes for the same seed, so the local repository is
reproducible and tests can compare Triton's answers with onnxruntime running the very same file.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Pinned rather than onnx's newest so that a newer onnx package cannot write a file the installed
# onnxruntime refuses to load, and so the bytes do not change when onnx is upgraded.
OPSET = 17
IR_VERSION = 8

_FLOAT = np.float32


def _weights(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(_FLOAT), name)


def _model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="localdev",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def densenet_like(seed: int) -> onnx.ModelProto:
    """data_0 [1,3,224,224] FP32 -> fc6_1 [1,1000,1,1] FP32: the real densenet's interface, a tiny body."""
    rng = np.random.default_rng(seed)
    nodes = [
        # Stride 4 and no padding: 224 -> 56, a sixteenth of the pixels, so a call costs well under 10 ms.
        helper.make_node("Conv", ["data_0", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[4, 4]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["pool"]),
        helper.make_node("Conv", ["pool", "w2", "b2"], ["fc6_1"], kernel_shape=[1, 1]),
    ]
    inits = [
        _weights(rng, "w1", (16, 3, 3, 3), scale=float(np.sqrt(2.0 / 27.0))),
        _weights(rng, "b1", (16,), scale=0.1),
        # Unit-scale logits: a spread of a few units keeps the top classes apart for classification tests.
        _weights(rng, "w2", (1000, 16, 1, 1), scale=1.0),
        _weights(rng, "b2", (1000,), scale=0.5),
    ]
    graph = helper.make_graph(
        nodes,
        "densenet_like",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("fc6_1", TensorProto.FLOAT, [1, 1000, 1, 1])],
        initializer=inits,
    )
    return _model(graph, "Stand-in for densenet-121 with the same input and output tensors.")


def batched_classifier(seed: int) -> onnx.ModelProto:
    """INPUT [N,3,64,64] FP32 -> PROBS [N,10] FP32 (softmax)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["INPUT", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["PROBS"], axis=-1),
    ]
    inits = [
        # VGG scaling leaves pixels in about [-124, 152]; the 1/64 brings activations near unit size so
        # the softmax stays far from one-hot and the two versions' probabilities visibly differ.
        _weights(rng, "w1", (8, 3, 3, 3), scale=float(np.sqrt(2.0 / 27.0)) / 64.0),
        _weights(rng, "b1", (8,), scale=0.1),
        _weights(rng, "w2", (8, 10), scale=1.0),
        _weights(rng, "b2", (10,), scale=0.5),
    ]
    graph = helper.make_graph(
        nodes,
        "batched_classifier",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("PROBS", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    return _model(graph, "Tiny 10-class classifier with a batch dimension.")


def nhwc_uint8_classifier(seed: int) -> onnx.ModelProto:
    """image [N,96,128,3] UINT8 -> scores [N,5] FP32; position-sensitive: flipping the image changes it."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["as_float"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "inv255"], ["unit"]),
        # 8x8 average blocks then a dense layer (not a global pool) so the answer depends on where pixels
        # are: tests can tell a correctly resized image from a rotated or flipped one.
        helper.make_node("AveragePool", ["unit"], ["blocks"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["blocks"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["scores"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(1.0 / 255.0, dtype=_FLOAT), "inv255"),
        _weights(rng, "w", (3 * 12 * 16, 5), scale=0.1),
        _weights(rng, "b", (5,), scale=0.1),
    ]
    graph = helper.make_graph(
        nodes,
        "nhwc_uint8_classifier",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 96, 128, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 5])],
        initializer=inits,
    )
    return _model(graph, "Channels-last uint8 image model: H=96, W=128.")


def gray_fp16_classifier(seed: int) -> onnx.ModelProto:
    """pixels [1,32,32] FP16 -> logits [4] FP32."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["as_float", "row_shape"], ["row"]),
        helper.make_node("Gemm", ["row", "w", "b"], ["logits_2d"]),
        helper.make_node("Reshape", ["logits_2d", "out_shape"], ["logits"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 32 * 32], dtype=np.int64), "row_shape"),
        numpy_helper.from_array(np.array([4], dtype=np.int64), "out_shape"),
        # Pixels arrive unscaled (0..255), so the weights carry the 1/1024 that keeps logits near unit size.
        _weights(rng, "w", (32 * 32, 4), scale=1.0 / 1024.0),
        _weights(rng, "b", (4,), scale=0.1),
    ]
    graph = helper.make_graph(
        nodes,
        "gray_fp16_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT16, [1, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4])],
        initializer=inits,
    )
    return _model(graph, "Single-channel half-precision image model, no batch dimension.")
