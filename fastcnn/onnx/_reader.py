"""Reading an ONNX file that may be hostile: the protobuf, its tensors and its attributes, every size checked.

The rules, each a function or method here:

* :func:`read_model` reads a regular file only (:mod:`fastcnn.data.files`: a FIFO, a device or a
  directory is refused before opening), at most :data:`MAX_MODEL_BYTES` of it (a ``.gz`` file is
  inflated up to that limit, no further), checks what parsing it would allocate
  (:mod:`fastcnn.onnx._wire`: the number of fields, the nesting, packed lists) and parses it as an
  ``onnx.ModelProto``: protobuf holds data, not code, and nothing in the file is run or followed
  (``onnx.load`` would read the external data files it names; this never calls it).
* :class:`TensorReader` turns a ``TensorProto`` into a numpy array only after checking its declared
  dims (at most :data:`MAX_DIMS` of them, each at most :data:`MAX_DIM`) times its item size against
  :data:`MAX_TENSOR_BYTES` and against the bytes the tensor really holds; it reads float, double,
  int64, int32 and bool tensors, refuses NaN and infinite floats, and reads external data only from regular
  files inside the model's folder (a relative path without ``..``, symbolic links resolved), each
  range checked against the file's size, :data:`MAX_EXTERNAL_BYTES` in all.
* :func:`attributes` reads a node's attributes (numbers, strings, lists, tensors) and refuses
  subgraphs, sparse tensors, type protos and references to function attributes.

Every refusal is a ValueError naming the tensor or node (:func:`fastcnn.onnx.load` adds the file); an
operator, attribute or data type fastcnn cannot express is an :class:`UnsupportedOnnxError` (also a
ValueError).
"""

import math
import os

import numpy as np

from ..data.files import check_path, open_regular, read_limited
from ._wire import check_message

__all__ = ["MAX_MODEL_BYTES", "MAX_TENSOR_BYTES", "MAX_EXTERNAL_BYTES", "MAX_DIMS", "MAX_DIM", "MAX_LIST",
           "UnsupportedOnnxError", "read_model", "TensorReader", "attributes"]

#: The largest ONNX file :func:`read_model` parses (a ``.gz`` file may inflate to this much).
MAX_MODEL_BYTES = 1 << 30
#: The largest tensor converted to an array.
MAX_TENSOR_BYTES = 1 << 32
#: The most bytes read from external data files, all tensors together.
MAX_EXTERNAL_BYTES = 1 << 32
#: The most dimensions of a tensor, and the largest dimension.
MAX_DIMS = 8
MAX_DIM = 1 << 31
#: The longest list attribute (``ints``, ``floats``, ``strings``).
MAX_LIST = 4096

# TensorProto.DataType -> (name, numpy dtype, the repeated field holding the values when raw_data is absent)
_TENSOR_TYPES = {
    1: ("float", np.float32, "float_data"),
    11: ("double", np.float64, "double_data"),
    7: ("int64", np.int64, "int64_data"),
    6: ("int32", np.int32, "int32_data"),
    9: ("bool", np.bool_, "int32_data"),
}
_TYPE_NAMES = {0: "undefined", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 8: "string",
               10: "float16", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"}
_EXTERNAL = 1  # TensorProto.EXTERNAL


class UnsupportedOnnxError(ValueError):
    """An ONNX model uses an operator, attribute or data type that fastcnn cannot express.

    The message names the node (its name and operator) and what is unsupported.
    """


# --------------------------------------------------------------------------- the file


def read_model(path, onnx):
    """The ``onnx.ModelProto`` in the file ``path``, read with the checks of the module docstring.

    Raises
    ------
    TypeError
        If ``path`` is not a str or path.
    FileNotFoundError
        If nothing is at ``path``.
    ValueError
        If ``path`` is no regular file, is larger than :data:`MAX_MODEL_BYTES`, is no protobuf
        ModelProto (truncated, corrupt, another format) or holds no graph.
    """
    from google.protobuf.message import DecodeError

    path = check_path(path, "fastcnn.onnx.load")
    data = read_limited(path, MAX_MODEL_BYTES, "ONNX model")
    try:
        check_message(data, onnx.ModelProto.DESCRIPTOR)
    except ValueError as exc:
        raise ValueError(f"{path}: not an ONNX model, or truncated or corrupt: {exc}") from None
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError, TypeError, RecursionError) as exc:
        raise ValueError(f"{path}: not an ONNX model, or truncated (protobuf says: {exc})") from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise ValueError(f"{path}: not an ONNX model, or truncated (no graph with nodes)")
    return proto


# --------------------------------------------------------------------------- tensors


def _type_name(code):
    entry = _TENSOR_TYPES.get(code)
    return entry[0] if entry else _TYPE_NAMES.get(code, f"type {code}")


class TensorReader:
    """Converts the ``TensorProto`` s of one model to numpy arrays, each size checked before allocating.

    Parameters
    ----------
    path : str
        The model's file: its folder is where external data may lie.
    """

    def __init__(self, path):
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path))
        self.external_bytes = 0

    def declared(self, t, where):
        """``(numpy dtype, dims, nbytes)`` that tensor ``t`` declares, checked against the limits (no data read)."""
        entry = _TENSOR_TYPES.get(t.data_type)
        if entry is None:
            raise UnsupportedOnnxError(f"{where} holds {_type_name(t.data_type)} values; fastcnn "
                                       "reads float, double, int64, int32 and bool tensors")
        dims = list(t.dims) if len(t.dims) <= MAX_DIMS else list(t.dims[:MAX_DIMS + 1])
        if len(t.dims) > MAX_DIMS or any(d < 0 or d > MAX_DIM for d in dims):
            raise ValueError(f"{where} declares dims {dims[:MAX_DIMS + 1]}: at most {MAX_DIMS} "
                             f"dims of 0 to {MAX_DIM}; the file is corrupt")
        dtype = np.dtype(entry[1])
        nbytes = math.prod(dims) * dtype.itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise ValueError(f"{where} declares {dtype}{dims}, {nbytes} bytes, more than the limit "
                             f"({MAX_TENSOR_BYTES}); the file is corrupt")
        if t.HasField("segment"):
            raise UnsupportedOnnxError(f"{where} is a segment of a larger tensor; not supported")
        return dtype, dims, nbytes

    def array(self, t, where):
        """Tensor ``t`` as a new numpy array of its declared dims.

        Raises ValueError when the data it holds (raw bytes, typed values or an external range) is not
        exactly the declared size, or a float tensor holds NaN or infinite values.
        """
        dtype, dims, nbytes = self.declared(t, where)
        count = nbytes // dtype.itemsize
        if t.data_location == _EXTERNAL:
            arr = np.frombuffer(self._external(t, nbytes, where), dtype=dtype.newbyteorder("<"))
        elif t.HasField("raw_data"):
            if len(t.raw_data) != nbytes:
                raise ValueError(f"{where} declares {dtype}{dims} ({nbytes} bytes) but holds "
                                 f"{len(t.raw_data)} bytes; the file is truncated or corrupt")
            arr = np.frombuffer(t.raw_data, dtype=dtype.newbyteorder("<"))
        else:
            values = getattr(t, _TENSOR_TYPES[t.data_type][2])
            if len(values) != count:
                raise ValueError(f"{where} declares {dtype}{dims} ({count} values) but holds "
                                 f"{len(values)}; the file is truncated or corrupt")
            arr = np.array(values, dtype=dtype)
        arr = arr.astype(dtype).reshape(dims)  # a native-order copy the caller owns
        if dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError(f"{where} holds NaN or infinite values")
        return arr

    def _external_location(self, entries, where):
        """The real path of an external data file, refused unless it is inside the model's folder."""
        location = entries.get("location", "")
        parts = location.replace("\\", "/").split("/")
        if not location or "\0" in location or os.path.isabs(location) or ".." in parts or location.startswith("/"):
            raise ValueError(f"{where}: external data location {location!r} is refused: it must be a "
                             "relative path inside the model's folder")
        folder = os.path.realpath(self.folder)
        real = os.path.realpath(os.path.join(folder, location))
        if os.path.commonpath([real, folder]) != folder:
            raise ValueError(f"{where}: external data location {location!r} leads outside the "
                             f"model's folder {folder} (to {real}); refused")
        return location, real

    def _external(self, t, nbytes, where):
        """The ``nbytes`` bytes of an external tensor, from a regular file in the model's folder."""
        entries = {e.key: e.value for e in t.external_data}
        location, real = self._external_location(entries, where)
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries.get("length", str(nbytes)))
        except ValueError:
            raise ValueError(f"{where}: external data offset/length are not integers: "
                             f"{entries.get('offset')!r}, {entries.get('length')!r}") from None
        if length != nbytes or offset < 0:
            raise ValueError(f"{where}: external data declares {length} bytes at offset {offset}, "
                             f"the tensor needs {nbytes}; the file is corrupt")
        if self.external_bytes + nbytes > MAX_EXTERNAL_BYTES:
            raise ValueError(f"{where}: more than {MAX_EXTERNAL_BYTES} bytes of external data in all")
        try:
            f, size = open_regular(real, "ONNX external data file")
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"{where}: external data {location!r}: {exc}") from None
        with f:
            if offset + nbytes > size:
                raise ValueError(f"{where}: external data {location!r} holds {size} bytes, the tensor "
                                 f"needs {nbytes} from offset {offset}; the data file is truncated")
            f.seek(offset)
            data = f.read(nbytes)
        if len(data) != nbytes:
            raise ValueError(f"{where}: external data {location!r} is truncated")
        self.external_bytes += nbytes
        return data


# --------------------------------------------------------------------------- attributes

# AttributeProto.AttributeType -> reader
_ATTRIBUTE_READERS = {
    1: lambda a: float(a.f),
    2: lambda a: int(a.i),
    3: lambda a: bytes(a.s).decode("utf-8", "replace"),
    6: lambda a: [float(v) for v in a.floats],
    7: lambda a: [int(v) for v in a.ints],
    8: lambda a: [bytes(v).decode("utf-8", "replace") for v in a.strings],
}
_ATTRIBUTE_TYPE_NAMES = {0: "undefined", 5: "graph", 10: "graphs", 11: "sparse tensor", 12: "sparse tensors",
                         13: "type proto", 14: "type protos", 9: "tensors"}


def attributes(node, tensors, where):
    """A node's attributes by name: float, int, str, lists of them, or arrays (tensor attributes).

    Raises
    ------
    UnsupportedOnnxError
        For a subgraph, sparse tensor, type proto, list of tensors or a reference to a function's
        attribute (``ref_attr_name``), naming the node and the attribute.
    ValueError
        For a list longer than :data:`MAX_LIST` or a tensor that :class:`TensorReader` refuses.
    """
    out = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise UnsupportedOnnxError(f"{where}: attribute {a.name!r} refers to a function attribute; not supported")
        if a.type == 4:
            out[a.name] = tensors.array(a.t, f"{where}, attribute {a.name!r}")
            continue
        read = _ATTRIBUTE_READERS.get(a.type)
        if read is None:
            kind = _ATTRIBUTE_TYPE_NAMES.get(a.type, f"type {a.type}")
            raise UnsupportedOnnxError(f"{where}: attribute {a.name!r} is a {kind}; not supported")
        if len(a.floats) + len(a.ints) + len(a.strings) > MAX_LIST:
            raise ValueError(f"{where}: attribute {a.name!r} lists more than {MAX_LIST} values")
        out[a.name] = read(a)
    return out

