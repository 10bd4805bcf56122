"""The scoring step as an ONNX graph, run by onnxruntime.

Inputs are the history rows (int64 [h], over every block) and their weights (float64
[1, h]); the graph gathers the rows of the float32 item matrix, sums them in float64 and
rounds once to float32, the same arithmetic as `MatrixScorer`, so rankings agree across
formats.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

OPSET = 17
ROWS, WEIGHTS, SCORES, MATRIX = "rows", "weights", "scores", "item_matrix"


def build_graph(
    matrix: np.ndarray, item_ids: list[str], popularity: np.ndarray, metadata: dict[str, Any]
) -> Any:
    """An onnx.ModelProto; item ids, popularity and metadata ride in metadata_props."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = matrix.shape[1]  # scores over items; the rows may be several blocks
    nodes = [
        helper.make_node("Gather", [MATRIX, ROWS], ["history_rows"], axis=0),
        helper.make_node("Cast", ["history_rows"], ["history_rows64"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", [WEIGHTS, "history_rows64"], ["scores64"]),
        helper.make_node("Cast", ["scores64"], [SCORES], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "seqease_scoring",
        inputs=[
            helper.make_tensor_value_info(ROWS, TensorProto.INT64, ["h"]),
            helper.make_tensor_value_info(WEIGHTS, TensorProto.DOUBLE, [1, "h"]),
        ],
        outputs=[helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, [1, n])],
        initializer=[numpy_helper.from_array(np.asarray(matrix, dtype=np.float32), MATRIX)],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="cinemate-model",
    )
    props = {
        "item_ids": json.dumps(list(item_ids)),
        "popularity": json.dumps(np.asarray(popularity, dtype=np.float64).tolist()),
        "metadata": json.dumps(metadata),
    }
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return proto


class OnnxScorer:
    """Scores through an onnxruntime session of `build_graph`'s model."""

    def __init__(self, model_bytes: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread: a per-request gather of ~50 rows gains nothing from a pool, and
        # serving already runs requests concurrently.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        (scores,) = self.session.run(
            [SCORES],
            {
                ROWS: np.asarray(rows, dtype=np.int64),
                WEIGHTS: np.asarray(weights, dtype=np.float64).reshape(1, -1),
            },
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def read_graph(proto: Any) -> tuple[np.ndarray, list[str], np.ndarray, dict[str, Any]]:
    """(matrix, item ids, popularity, metadata) back from a model built by build_graph."""
    from onnx import numpy_helper

    props = {p.key: p.value for p in proto.metadata_props}
    tensors = {t.name: t for t in proto.graph.initializer}
    matrix = numpy_helper.to_array(tensors[MATRIX])
    item_ids = [str(item) for item in json.loads(props["item_ids"])]
    popularity = np.asarray(json.loads(props["popularity"]), dtype=np.float32)
    metadata = json.loads(props["metadata"])
    return matrix, item_ids, popularity, metadata
