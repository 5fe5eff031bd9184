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
    ``running_mean`` and ``running_var``), listed in the JSON under ``buffers``.
``normalizer_<key>``
    Array entries of the normalizer state; str, bool, int and float entries
    live in the JSON.

Files are read with ``np.load(path, allow_pickle=False)`` and written
atomically: to a temporary file in the same folder, flushed to disk, then
renamed over the target, so an interrupted save leaves the old file intact.

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
import numbers
import os
import tempfile

import numpy as np

from . import layers as _layers
from .layers import init as _init

__all__ = ["LAYERS", "FORMAT", "FORMAT_VERSION", "save_model", "load", "load_checkpoint",
           "model_to_config", "model_from_config"]

FORMAT = "fastcnn-checkpoint"
FORMAT_VERSION = 1

#: Layer classes that checkpoints can hold, by the name stored in the file.
LAYERS = {
    cls.__name__: cls
    for cls in (
        _layers.Conv2d,
        _layers.Linear,
        _layers.MaxPool2d,
        _layers.AvgPool2d,
        _layers.GlobalAvgPool2d,
        _layers.ReLU,
        _layers.Sigmoid,
        _layers.Tanh,
        _layers.LeakyReLU,
        _layers.Softmax,
        _layers.BatchNorm2d,
        _layers.BatchNorm1d,
        _layers.Normalize,
        _layers.Flatten,
        _layers.Dropout,
        _layers.Residual,
        _layers.LocallyConnected2d,
    )
}

_NORMALIZER_PREFIX = "normalizer_"
_BUFFER_PREFIX = "buffer_"  # buffer_<layer index>_<name>: a layer's buffers() (BatchNorm running stats)


def _load_buffers(model, arrays, header, path):
    """Copy ``buffer_<i>_<name>`` arrays into each layer's ``buffers()``, in place.

    Checkpoints written before buffers were saved have no ``buffers`` list in
    their header; their layers keep the fresh buffers they were built with.
    """
    listed = header.get("buffers")
    for i, layer in enumerate(model.layers):
        for name, buf in (layer.buffers() if hasattr(layer, "buffers") else {}).items():
            key = f"{_BUFFER_PREFIX}{i}_{name}"
            arr = arrays.get(key)
            if arr is None:
                if listed is None:
                    continue
                raise ValueError(f"{path}: corrupt checkpoint: {key} (layer {i} {layer!r}) is missing")
            if arr.shape != buf.shape or arr.dtype != buf.dtype:
                raise ValueError(f"{path}: corrupt checkpoint: {key} is {arr.dtype}{list(arr.shape)}, "
                                 f"layer {i} {layer!r} needs {buf.dtype}{list(buf.shape)}")
            buf[...] = arr


# --------------------------------------------------------------------------- architecture


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.size <= 64:
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _dumps(obj, what):
    try:
        return json.dumps(obj, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save: {what} must be JSON-serialisable (numbers, strings, lists, dicts): {exc}") from None


def _check_saveable(layer, where):
    """ValueError unless ``layer`` and any layers nested in it (``sublayers()``) are in :data:`LAYERS`."""
    name = type(layer).__name__
    if LAYERS.get(name) is not type(layer):
        raise ValueError(
            f"save: {where} ({layer!r}) is a {name}, which checkpoints cannot hold; "
            f"supported layers: {', '.join(sorted(LAYERS))}"
        )
    for j, inner in enumerate(getattr(layer, "sublayers", list)()):
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
    nested = getattr(cls, "nested_config_keys", ())
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
    except (TypeError, ValueError) as exc:
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
        For a layer class checkpoints cannot hold, an object array, or an
        ``extra`` that is not JSON-serialisable; nothing is written then.
    OSError
        If the file cannot be written; an existing file at ``path`` is left
        unchanged and no temporary file remains.
    """
    path = os.fspath(path)
    params = model.parameters()
    arrays = {f"param_{i}": p.data for i, p in enumerate(params)}
    buffer_keys = []
    for i, layer in enumerate(model.layers):
        for name, buf in (layer.buffers() if hasattr(layer, "buffers") else {}).items():
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

    opt = _state(optimizer, "optimizer")
    if opt is not None:
        opt = dict(opt)
        buffers = list(opt.pop("momentum_buffers", []) or [])
        if buffers and len(buffers) != len(params):
            raise ValueError(f"save: the optimizer has {len(buffers)} momentum buffers but the model "
                             f"has {len(params)} parameters; pass the optimizer built on this model")
        for i, b in enumerate(buffers):
            if b is not None:
                arrays[f"momentum_{i}"] = _plain_array(b, f"momentum buffer {i}")
        opt["num_buffers"] = len(buffers)
        if optimizer is not None and not isinstance(optimizer, dict):
            opt.setdefault("class", type(optimizer).__name__)
        header["optimizer"] = opt

    norm = _state(normalizer, "normalizer")
    if norm is not None:
        scalars = {}
        for key, value in norm.items():
            if isinstance(value, (str, bool, numbers.Number)) or value is None:
                scalars[key] = value
            else:
                arrays[_NORMALIZER_PREFIX + key] = _plain_array(value, f"normalizer[{key!r}]")
        header["normalizer"] = {"scalars": scalars, "arrays": sorted(k for k in norm if k not in scalars)}

    header["schedule"] = _state(schedule, "schedule")
    header["extra"] = extra
    arrays["config"] = np.array(_dumps(header, "the optimizer, schedule and extra"))
    for name, arr in arrays.items():
        _plain_array(arr, name)
    _atomic_savez(path, arrays)


def _atomic_savez(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.NamedTemporaryFile(dir=folder, prefix=".fastcnn-", suffix=".tmp", delete=False)
    try:
        with tmp:
            np.savez(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        try:
            os.unlink(tmp.name)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible everywhere
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _version():
    from . import __version__

    return __version__


# --------------------------------------------------------------------------- load


def _read(path):
    """All arrays of the archive, or ValueError saying why the file is no checkpoint."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a fastcnn checkpoint")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = "a single .npy array" if magic == b"\x93NUMPY" else "not an .npz (zip) archive"
        raise ValueError(f"{path}: not a fastcnn checkpoint ({what})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError("it holds a single array, not an .npz archive")
            return {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ValueError(f"{path}: refused: it holds pickled (object) data, which fastcnn never "
                             "loads; checkpoints hold plain arrays only") from None
        raise ValueError(f"{path}: not a fastcnn checkpoint ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a fastcnn checkpoint, or truncated ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, ...
        raise ValueError(f"{path}: not a fastcnn checkpoint, or truncated ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_model` / ``Sequential.save``.

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
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, not an ``.npz`` written by fastcnn, holds
        pickled data, or its parameters do not fit its architecture.
    """
    path = os.fspath(path)
    arrays = _read(path)
    if "config" not in arrays:
        raise ValueError(f"{path}: not a fastcnn checkpoint (no 'config' entry; it holds "
                         f"{', '.join(sorted(arrays)[:5]) or 'nothing'})")
    raw = arrays["config"]
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path}: not a fastcnn checkpoint ('config' is not a JSON string)")
    try:
        header = json.loads(str(raw))
    except ValueError as exc:
        raise ValueError(f"{path}: corrupt checkpoint: its config is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastcnn checkpoint (config has no format {FORMAT!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version!r} is newer than this fastcnn "
                         f"reads ({FORMAT_VERSION}); upgrade fastcnn")
    try:
        model = model_from_config(header.get("model"))
    except ValueError as exc:
        raise ValueError(f"{path}: corrupt checkpoint: {exc}") from None

    params = model.parameters()
    stored = sorted((k for k in arrays if k.startswith("param_")), key=lambda k: k)
    if header.get("num_params") != len(params) or len(stored) != len(params):
        raise ValueError(f"{path}: corrupt checkpoint: the architecture has {len(params)} parameters but "
                         f"the file holds {len(stored)} (config says {header.get('num_params')!r})")
    for i, p in enumerate(params):
        arr = arrays.get(f"param_{i}")
        if arr is None:
            raise ValueError(f"{path}: corrupt checkpoint: param_{i} is missing")
        if arr.shape != p.data.shape or arr.dtype != p.data.dtype:
            raise ValueError(f"{path}: corrupt checkpoint: param_{i} is {arr.dtype}{list(arr.shape)}, "
                             f"the architecture needs {p.data.dtype}{list(p.data.shape)}")
    for i, p in enumerate(params):
        p.data[...] = arrays[f"param_{i}"]
    _load_buffers(model, arrays, header, path)

    optimizer_state = None
    opt = header.get("optimizer")
    if opt is not None:
        optimizer_state = {k: v for k, v in opt.items() if k != "num_buffers"}
        n = opt.get("num_buffers", 0)
        buffers = [arrays.get(f"momentum_{i}") for i in range(n)]
        for i, (b, p) in enumerate(zip(buffers, params)):
            if b is not None and b.shape != p.data.shape:
                raise ValueError(f"{path}: corrupt checkpoint: momentum_{i} has shape {list(b.shape)}, "
                                 f"param_{i} has {list(p.data.shape)}")
        optimizer_state["momentum_buffers"] = buffers if n else [None] * len(params)

    normalizer_state = None
    norm = header.get("normalizer")
    if norm is not None:
        normalizer_state = dict(norm.get("scalars") or {})
        for key in norm.get("arrays") or []:
            if _NORMALIZER_PREFIX + key not in arrays:
                raise ValueError(f"{path}: corrupt checkpoint: normalizer array {key!r} is missing")
            normalizer_state[key] = arrays[_NORMALIZER_PREFIX + key]

    extra = header.get("extra")
    return {
        "model": model,
        "optimizer_state": optimizer_state,
        "normalizer_state": normalizer_state,
        "schedule_state": header.get("schedule"),
        "extra": extra,
        "epoch": extra.get("epoch") if isinstance(extra, dict) else None,
        "history": extra.get("history") if isinstance(extra, dict) else None,
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
