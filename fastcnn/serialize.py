"""Saving and loading models and training checkpoints as one ``.npz`` file.

A checkpoint is an uncompressed numpy ``.npz`` archive holding only plain
numeric (or unicode) arrays, never pickles:

``config``
    A 0-d unicode array of JSON text: the format name and version, the
    fastcnn version, the architecture (each layer as ``{"class": name,
    "config": {...}}`` plus the model's ``input_shape`` and dtype), the number
    of parameters, the optimizer's hyperparameters, the normalizer's and the
    schedule's JSON parts, and the free-form ``extra`` (epoch, history, seed ...).
``param_0`` ... ``param_{n-1}``
    The parameters in ``model.parameters()`` order.
``momentum_i``
    The optimizer's momentum buffer for parameter ``i`` (absent while it is None).
``buffer_<i>_<name>``
    Non-trainable layer state from layer ``i``'s ``buffers()`` (BatchNorm's
    ``running_mean`` and ``running_var``, a Normalize layer's ``mean`` and
    ``std``; a Residual's inner layers' as ``block1_running_mean`` ...),
    listed in the JSON under ``buffers``.
``normalizer_<key>``
    Array entries of the normalizer state; str, bool, int and float entries
    live in the JSON.

Layers are named by their class name and built back from
:data:`LAYERS`, the registry every :class:`~fastcnn.layers.Layer` subclass
adds itself to when it is defined.

Files are read with ``np.load(path, allow_pickle=False)`` and written
atomically (:func:`fastcnn._util.atomic_write`): to a temporary file in the
same folder, flushed to disk, then renamed over the target, so an interrupted
save leaves the old file intact.  The file gets the mode the umask gives a
new file (``0644`` with the usual umask).

Examples
--------
>>> import numpy as np, fastcnn
>>> model = fastcnn.models.lenet5()
>>> model.save("/tmp/lenet5-doctest.npz")
>>> same = fastcnn.load("/tmp/lenet5-doctest.npz")
>>> x = np.zeros((2, 1, 28, 28), np.float32)
>>> bool((same.predict(x) == model.predict(x)).all())
True
"""

import json
import math
import numbers
import os
import re

import numpy as np

from ._checkpoint_schema import BUILD_FLOOR, BUILD_SLACK, MAX_CONFIG_BYTES, build_cost, check_header, is_int
from ._util import atomic_write, to_jsonable
from .data.files import NpzReader, check_path, check_regular_file, loads_json
from .data.files import short_repr as _show
from .layers import init as _init
from .layers.base import LAYER_CLASSES

__all__ = ["LAYERS", "FORMAT", "FORMAT_VERSION", "save_model", "load", "load_checkpoint",
           "model_to_config", "model_from_config"]

FORMAT = "fastcnn-checkpoint"
FORMAT_VERSION = 1

#: Layer classes that checkpoints can hold, by the name stored in the file: the registry that
#: :class:`~fastcnn.layers.Layer` subclasses join when they are defined (the same dict object).
LAYERS = LAYER_CLASSES

_NORMALIZER_PREFIX = "normalizer_"
_BUFFER_PREFIX = "buffer_"  # buffer_<layer index>_<name>: a layer's buffers() (BatchNorm running stats)


# --------------------------------------------------------------------------- architecture


def _dumps(obj, what):
    try:
        return json.dumps(to_jsonable(obj, allow_nan=True), allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save: {what} must be JSON-serialisable (numbers, strings, lists, dicts): {exc}") from None


def _check_saveable(layer, where):
    """ValueError unless ``layer`` and any layers nested in it (``children()``) are in :data:`LAYERS`."""
    name = type(layer).__name__
    if LAYERS.get(name) is not type(layer):
        raise ValueError(
            f"save: {where} ({layer!r}) is a {name}, which checkpoints cannot hold; "
            f"supported layers: {', '.join(sorted(LAYERS))}"
        )
    for j, inner in enumerate(layer.children()):
        _check_saveable(inner, f"{where}, inner layer {j}")


def _layer_from_config(entry, where):
    """Build one layer from ``{"class": name, "config": {...}}``; layers nested in it are built first.

    A class's ``nested_config_keys`` names the constructor arguments that hold
    lists of such entries (``Residual``'s ``block`` and ``shortcut``).
    """
    if not isinstance(entry, dict) or entry.get("class") not in LAYERS:
        got = entry.get("class") if isinstance(entry, dict) else entry
        raise ValueError(f"{where}: unknown layer class {got!r}; known: {', '.join(sorted(LAYERS))}")
    cls = LAYERS[entry["class"]]
    kwargs = entry.get("config") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: 'config' must be a dict, got {type(kwargs).__name__}")
    nested = cls.nested_config_keys
    built = {}
    for k, v in kwargs.items():
        if k in nested and v is not None:
            if not isinstance(v, list):
                raise ValueError(f"{where} ({entry['class']}): {k!r} must be a list of layer entries")
            built[k] = [_layer_from_config(e, f"{where}, {k}[{j}]") for j, e in enumerate(v)]
        else:
            built[k] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**built)
    except (TypeError, ValueError, OverflowError, MemoryError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"{where} ({entry['class']}): cannot be built from {kwargs}: {exc}") from None


def model_to_config(model):
    """The architecture of a :class:`~fastcnn.Sequential` as a JSON-able dict.

    Raises ValueError for a layer class that is not in :data:`LAYERS`.
    """
    layer_configs = []
    for i, layer in enumerate(model.layers):
        name = type(layer).__name__
        _check_saveable(layer, f"layer {i}")
        layer_configs.append({"class": name, "config": layer.get_config()})
    return {
        "class": "Sequential",
        "input_shape": None if model.input_shape is None else list(model.input_shape),
        "dtype": model.dtype.name,
        "layers": layer_configs,
    }


def model_from_config(config):
    """Build a :class:`~fastcnn.Sequential` from :func:`model_to_config`'s dict, with fresh weights.

    Building does not disturb the generator that ``fastcnn.manual_seed`` seeds.
    """
    from .model import Sequential

    if not isinstance(config, dict) or not isinstance(config.get("layers"), list) or not config["layers"]:
        raise ValueError("model config must be a dict with a non-empty 'layers' list")
    built = []
    saved_rng = _init._rng
    _init._rng = np.random.default_rng(0)  # weights are overwritten; keep the user's stream untouched
    try:
        for i, entry in enumerate(config["layers"]):
            built.append(_layer_from_config(entry, f"layer {i}"))
    finally:
        _init._rng = saved_rng
    input_shape = config.get("input_shape")
    try:
        return Sequential(*built, input_shape=None if input_shape is None else tuple(input_shape))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the stored architecture is inconsistent: {exc}") from None


# --------------------------------------------------------------------------- save


def _state(obj, what):
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise TypeError(f"save: {what} must have a state_dict() method or be a dict, got {type(obj).__name__}")


def _plain_array(value, name):
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufU":
        raise ValueError(f"save: {name} has dtype {arr.dtype}; only numeric and string arrays can be saved "
                         "(object arrays would need pickle, which checkpoints never use)")
    return arr


def save_model(model, path, optimizer=None, normalizer=None, schedule=None, extra=None):
    """Write a model (and optionally its training state) to one ``.npz`` file, atomically.

    Parameters
    ----------
    model : fastcnn.Sequential
    path : str or os.PathLike
        Written exactly as given (no ``.npz`` is appended).
    optimizer : fastcnn.optim.SGD or its ``state_dict()``, optional
        Hyperparameters and momentum buffers (``momentum_i``).
    normalizer : object with ``state_dict()``, or a dict, optional
        Values may be arrays (stored as ``normalizer_<key>``), str, bool, int
        or float (stored in the JSON).
    schedule : object with ``state_dict()``, or a JSON-able dict, optional
    extra : JSON-able dict, optional
        Free-form: epoch, history, seed, RNG states ...

    Raises
    ------
    ValueError
        For a layer class checkpoints cannot hold, an object or non-finite array
        (:func:`load` refuses them), or a non-JSON ``extra``; nothing is written.
    OSError
        If the file cannot be written; an existing file at ``path`` is left
        unchanged and no temporary file remains.
    """
    path = os.fspath(path)
    params = model.parameters()
    arrays = {f"param_{i}": p.data for i, p in enumerate(params)}
    buffer_keys = []
    for i, layer in enumerate(model.layers):
        for name, buf in layer.buffers().items():
            buffer_keys.append(f"{_BUFFER_PREFIX}{i}_{name}")
            arrays[buffer_keys[-1]] = buf
    header = {
        "buffers": buffer_keys,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastcnn_version": _version(),
        "model": model_to_config(model),
        "num_params": len(params),
        "param_shapes": [list(p.data.shape) for p in params],
        "optimizer": None,
        "normalizer": None,
        "schedule": None,
        "extra": None,
    }

    header["optimizer"] = _optimizer_entry(optimizer, len(params), arrays)
    header["normalizer"] = _normalizer_entry(normalizer, arrays)
    header["schedule"] = _state(schedule, "schedule")
    header["extra"] = extra
    for key, arr in arrays.items():  # load refuses them: a checkpoint that cannot be loaded is not written
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise ValueError(f"save_model: {key} holds NaN or infinite values (did training diverge?); "
                             f"nothing is written to {path!r}")
    arrays["config"] = np.array(_dumps(header, "the optimizer, schedule and extra"))
    for name, arr in arrays.items():
        _plain_array(arr, name)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _optimizer_entry(optimizer, num_params, arrays):
    """The optimizer's JSON part (or None); its momentum buffers go into ``arrays`` as ``momentum_<i>``."""
    opt = _state(optimizer, "optimizer")
    if opt is None:
        return None
    opt = dict(opt)
    buffers = list(opt.pop("momentum_buffers", []) or [])
    if buffers and len(buffers) != num_params:
        raise ValueError(f"save: the optimizer has {len(buffers)} momentum buffers but the model "
                         f"has {num_params} parameters; pass the optimizer built on this model")
    for i, b in enumerate(buffers):
        if b is not None:
            arrays[f"momentum_{i}"] = _plain_array(b, f"momentum buffer {i}")
    opt["num_buffers"] = len(buffers)
    if not isinstance(optimizer, dict):
        opt.setdefault("class", type(optimizer).__name__)
    return opt


def _normalizer_entry(normalizer, arrays):
    """The normalizer's JSON part (or None): its scalars, and the names of its arrays, which go into ``arrays``."""
    norm = _state(normalizer, "normalizer")
    if norm is None:
        return None
    scalars = {}
    for key, value in norm.items():
        if isinstance(value, (str, bool, numbers.Number)) or value is None:
            scalars[key] = value
        else:
            arrays[_NORMALIZER_PREFIX + key] = _plain_array(value, f"normalizer[{key!r}]")
    return {"scalars": scalars, "arrays": sorted(k for k in norm if k not in scalars)}


def _version():
    from . import __version__

    return __version__


# --------------------------------------------------------------------------- load

def _open_archive(path):
    """The checkpoint as an :class:`~fastcnn.data.files.NpzReader`, or ValueError saying why it is none."""
    check_regular_file(path, "checkpoint")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = "a single .npy array" if magic == b"\x93NUMPY" else "not an .npz (zip) archive"
        raise ValueError(f"{path}: not a fastcnn checkpoint ({what})")
    try:
        return NpzReader(path, "checkpoint")
    except ValueError as exc:
        raise ValueError(f"{path}: not a fastcnn checkpoint, or truncated ({exc})") from None


def _header(npz, path):
    """The JSON ``config`` entry, parsed and checked against the schema; ValueError saying what is wrong."""
    if "config" not in npz:
        raise ValueError(f"{path}: not a fastcnn checkpoint (no 'config' entry; it holds "
                         f"{', '.join(sorted(npz.names)[:5]) or 'nothing'})")
    raw = npz.read("config", limit=MAX_CONFIG_BYTES)
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path}: not a fastcnn checkpoint ('config' is not a JSON string)")
    header = loads_json(str(raw), f"{path}: corrupt checkpoint: config")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastcnn checkpoint (config has no format {FORMAT!r})")
    version = header.get("format_version")
    if not is_int(version) or version < 0:
        raise ValueError(f"{path}: corrupt checkpoint: format_version must be an int >= 0, got {_show(version)}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version} is newer than this fastcnn "
                         f"reads ({FORMAT_VERSION}); upgrade fastcnn")
    try:
        check_header(header)
    except ValueError as exc:
        raise ValueError(f"{path}: corrupt checkpoint: {exc}") from None
    return header


def _stored_values(npz, header):
    """The number of values the ``param_<i>`` members hold (headers only), checked against the header."""
    num = header["num_params"]
    stored = [k for k in npz.names if re.fullmatch(r"param_\d+", k)]
    if len(stored) != num:
        raise ValueError(f"the file holds {len(stored)} parameters (param_<i> arrays) but config says {num}")
    total = 0
    for i in range(num):
        if f"param_{i}" not in npz:
            raise ValueError(f"param_{i} is missing")
        shape, dtype = npz.header(f"param_{i}")
        declared = header.get("param_shapes")
        if declared is not None and list(shape) != declared[i]:
            raise ValueError(f"param_{i} has shape {list(shape)}, config says {declared[i]}")
        total += math.prod(shape)
    return total


def _build(npz, header):
    """The architecture, built once its layer sizes are known to fit the values the file stores."""
    stored = _stored_values(npz, header)
    cost = sum(build_cost(entry) for entry in header["model"]["layers"])
    if cost > max(BUILD_FLOOR, BUILD_SLACK * stored):
        raise ValueError(f"its layer sizes would need about {cost} values but the file stores {stored}")
    return model_from_config(header["model"])


def _finite(arr, key):
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{key} holds NaN or infinite values")
    return arr


def _read_buffers(npz, model, header):
    """``{(layer index, name): array}`` for every buffer of the layers, checked (None for absent ones of
    checkpoints written before buffers were saved)."""
    found = {}
    for i, layer in enumerate(model.layers):
        for name, buf in layer.buffers().items():
            key = f"{_BUFFER_PREFIX}{i}_{name}"
            if key not in npz:
                if header.get("buffers") is None:
                    continue
                raise ValueError(f"{key} (layer {i} {layer!r}) is missing")
            arr = _finite(npz.read(key, shape=buf.shape, dtype=buf.dtype), key)
            if name.endswith("std") and not (arr > 0).all():
                raise ValueError(f"{key} holds standard deviations <= 0")
            if name.endswith("var") and not (arr >= 0).all():
                raise ValueError(f"{key} holds negative variances")
            found[(i, name)] = arr
    return found


def _optimizer_state(npz, opt, params):
    """``SGD.load_state_dict``'s dict from the header's optimizer entry and the ``momentum_<i>`` arrays (or None)."""
    if opt is None:
        return None
    state = {k: v for k, v in opt.items() if k != "num_buffers"}
    buffers = [None] * len(params)
    for i in range(opt.get("num_buffers", 0)):
        key = f"momentum_{i}"
        if key in npz:
            buffers[i] = _finite(npz.read(key, shape=params[i].data.shape), key)
    state["momentum_buffers"] = buffers
    return state


def _normalizer_state(npz, norm):
    """The normalizer's state: its JSON scalars and its ``normalizer_<key>`` arrays (or None), checked."""
    if norm is None:
        return None
    state = dict(norm.get("scalars") or {})
    for key in norm.get("arrays") or []:
        if _NORMALIZER_PREFIX + key not in npz:
            raise ValueError(f"normalizer array {key!r} is missing")
        state[key] = _finite(npz.read(_NORMALIZER_PREFIX + key, limit=MAX_CONFIG_BYTES), _NORMALIZER_PREFIX + key)
    std = state.get("std")
    if std is not None and not (np.asarray(std, dtype=np.float64) > 0).all():
        raise ValueError("the normalizer's standard deviations must be > 0")
    return state


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_model` / ``Sequential.save``.

    Nothing is built or allocated before the whole JSON header has been checked against the
    checkpoint schema (types, ranges, finiteness, nesting depth) and every size it declares against
    the sizes of the archive's members; only the members the checkpoint needs are read, each size
    checked before reading (:class:`fastcnn.data.files.NpzReader`); pickles are never loaded.

    Returns
    -------
    dict
        ``model`` (a Sequential with the saved weights, in training mode),
        ``optimizer_state`` (for ``SGD.load_state_dict``, or None),
        ``normalizer_state`` (dict, or None), ``schedule_state`` (or None),
        ``extra`` (dict, or None), ``epoch`` and ``history`` (taken from
        ``extra``, or None), ``config`` (the parsed JSON header).

    Raises
    ------
    TypeError
        If ``path`` is not a str or path.
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a regular file (a FIFO, a device, a directory), or the file is truncated,
        not an ``.npz`` written by fastcnn, holds pickled data, breaks the schema, declares sizes its
        members do not hold, holds NaN or infinite weights, statistics or momentum, standard
        deviations <= 0, or parameters that do not fit its architecture.
    """
    path = check_path(path, "load_checkpoint")
    with _open_archive(path) as npz:
        header = _header(npz, path)
        try:
            model = _build(npz, header)
            params = model.parameters()
            weights = [_finite(npz.read(f"param_{i}", shape=p.data.shape, dtype=p.data.dtype), f"param_{i}")
                       for i, p in enumerate(params)]
            buffers = _read_buffers(npz, model, header)
            optimizer = _optimizer_state(npz, header.get("optimizer"), params)
            normalizer = _normalizer_state(npz, header.get("normalizer"))
        except ValueError as exc:
            raise ValueError(f"{path}: corrupt checkpoint: {exc}") from None
    for p, w in zip(params, weights):
        p.data[...] = w
    for i, layer in enumerate(model.layers):
        for name, buf in layer.buffers().items():
            if (i, name) in buffers:
                buf[...] = buffers[(i, name)]
    extra = header.get("extra")
    return {
        "model": model,
        "optimizer_state": optimizer,
        "normalizer_state": normalizer,
        "schedule_state": header.get("schedule"),
        "extra": extra,
        "epoch": (extra or {}).get("epoch"),
        "history": (extra or {}).get("history"),
        "config": header,
    }


def load(path):
    """Load the model saved at ``path`` (by ``Sequential.save``); see :func:`load_checkpoint`.

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.models.lenet5().save("/tmp/lenet5-doctest.npz")
    >>> fastcnn.load("/tmp/lenet5-doctest.npz").input_shape
    (1, 28, 28)
    """
    return load_checkpoint(path)["model"]
