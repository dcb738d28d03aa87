"""Which ops a SavedModel needs, and which of them plain TensorFlow lacks.

A SavedModel loads only where every op its graph names is registered:
TensorFlow's C++ loader (`saved_model_cli`, TensorFlow Serving) rejects the
whole graph with `Op type not registered '...'` otherwise, whichever
signature is asked for. Ops of extension libraries, e.g. tensorflow-text's
tokenizers, are registered only where that library is linked in or
imported, so an export that uses them is servable only by a build that has
them. `required_ops(path)` names those ops before deployment;
`saved_model_ops(path)` lists every op the graph uses.

"Core" here means registered by TensorFlow alone: the op registry of a
fresh Python process that imports `tensorflow` and nothing else (no
tensorflow_text, whatever the calling process has imported). That process
runs once per calling process and its answer is kept.
"""

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterable

from tensorflow.core.protobuf import saved_model_pb2

# Run in a fresh interpreter: prints the names of the ops TensorFlow alone
# registers, after checking that nothing else registered any.
_LIST_CORE_OPS = """
import json, sys
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c_api

extensions = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow_text")
if extensions:
    raise SystemExit("tensorflow_text was imported: " + ", ".join(extensions))
ops = op_def_pb2.OpList()
ops.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
print(json.dumps(sorted(op.name for op in ops.op)))
"""


def _saved_model_proto(path):
    """Parses `path/saved_model.pb` (or `path` itself, a `.pb` file)."""
    if os.path.isdir(path):
        path = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No SavedModel at path={path!r}: saved_model.pb not found"
        )
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        proto.ParseFromString(handle.read())
    return proto


def saved_model_ops(path: "str | os.PathLike") -> list[str]:
    """Every op type a SavedModel's graphs use, its functions included.

    Walks each MetaGraph's `graph_def`: its nodes and the nodes of every
    function in its function library (the bodies of `tf.function`s,
    `tf.while_loop`s and `tf.cond`s). A node that calls a library function
    by name is a call, not an op, and is left out.

    Args:
        path: a SavedModel folder (holding `saved_model.pb`), or the path of
            a `saved_model.pb` file.

    Returns:
        A sorted list of op type names, e.g. `["Const", "MatMul", ...]`.

    Example:

    >>> import tempfile
    >>> import tensorflow as tf
    >>> module = tf.Module()
    >>> module.double = tf.function(
    ...     lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.int32)])
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(module, path)
    >>> "Mul" in saved_model_ops(path)
    True
    """
    ops = set()
    for meta_graph in _saved_model_proto(os.fspath(path)).meta_graphs:
        graph = meta_graph.graph_def
        functions = {f.signature.name for f in graph.library.function}
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
        ops.difference_update(functions)
    return sorted(ops)


@functools.lru_cache(maxsize=1)
def core_ops() -> frozenset[str]:
    """The op types TensorFlow alone registers.

    Read from a fresh interpreter (this Python, isolated mode, empty
    `PYTHONPATH`) that imports `tensorflow` only, so ops that this process
    registered by importing an extension (tensorflow_text and the like)
    never count as core. Computed once per process.

    Returns:
        A `frozenset` of op type names.

    Example:

    >>> {"MatMul", "StatelessRandomUniformV2"} <= core_ops()
    True
    >>> "RegexSplitWithOffsets" in core_ops()  # tensorflow-text's
    False
    """
    env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run(
        [sys.executable, "-I", "-c", _LIST_CORE_OPS],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            "Could not list TensorFlow's registered ops in a fresh process: "
            + completed.stderr[-2000:]
        )
    return frozenset(json.loads(completed.stdout.strip().splitlines()[-1]))


def required_ops(path: "str | os.PathLike", available_ops: "Iterable[str] | None" = None) -> list[str]:
    """The ops a SavedModel needs beyond those a TensorFlow build has.

    An empty list means the export loads in any TensorFlow or TF Serving
    build of a compatible version; otherwise the build must register each
    op named (e.g. link tensorflow-text in).

    Args:
        path: a SavedModel folder, or the path of its `saved_model.pb`.
        available_ops: `None` for the ops TensorFlow alone registers
            (`core_ops()`), or an iterable of op type names: those of the
            build to deploy on.

    Returns:
        A sorted list of the op type names `path` uses that are not
        available.

    Example:

    >>> import tempfile
    >>> import tensorflow as tf
    >>> module = tf.Module()
    >>> module.double = tf.function(
    ...     lambda x: 2 * x, input_signature=[tf.TensorSpec([None], tf.int32)])
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(module, path)
    >>> required_ops(path)
    []
    >>> build_ops = set(saved_model_ops(path)) - {"Mul"}  # a build without Mul
    >>> required_ops(path, available_ops=build_ops)
    ['Mul']
    """
    available = core_ops() if available_ops is None else frozenset(available_ops)
    return [op for op in saved_model_ops(path) if op not in available]
