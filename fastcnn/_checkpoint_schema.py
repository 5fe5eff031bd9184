"""The checkpoint schema: what the JSON header of a ``.npz`` checkpoint may hold, checked before anything is built.

:func:`check_header` raises ValueError naming the first entry that breaks it
(types, ranges, finiteness, sizes); :func:`build_cost` bounds what building
the declared layers would allocate.  :mod:`fastcnn.serialize` reads and
writes the checkpoints.
"""

import math
import re

from .data.files import check_json_numbers
from .data.files import require as _want
from .layers.base import LAYER_CLASSES as LAYERS

#: What a checkpoint may declare; a file beyond these is refused before anything is built or read.
MAX_CONFIG_BYTES = 64 << 20
MAX_LAYERS = 10_000
MAX_PARAMS = 100_000
MAX_DIM = 1 << 31
#: Building the layers may allocate at most this many times the values the file stores (or BUILD_FLOOR).
BUILD_SLACK = 256
BUILD_FLOOR = 1 << 24
_BUFFER_KEY = re.compile(r"buffer_\d{1,6}_\w{1,64}")
_ARRAY_NAME = re.compile(r"\w{1,64}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_json_numbers(value, where):
    check_json_numbers(value, where, MAX_DIM)


def _check_layer_entry(entry, where):
    _want(isinstance(entry, dict), where, "a dict {'class': name, 'config': {...}}", entry)
    name = entry.get("class")
    _want(isinstance(name, str) and name in LAYERS, f"{where}.class", f"one of {', '.join(sorted(LAYERS))}", name)
    config = entry.get("config")
    _want(config is None or isinstance(config, dict), f"{where}.config", "a dict", config)
    for key, value in (config or {}).items():
        if key in LAYERS[name].nested_config_keys and value is not None:
            _want(isinstance(value, list) and len(value) <= MAX_LAYERS, f"{where}.config.{key}",
                  "a list of layer entries", value)
            for j, inner in enumerate(value):
                _check_layer_entry(inner, f"{where}.config.{key}[{j}]")
        else:
            _check_json_numbers(value, f"{where}.config.{key}")


def _check_model_entry(model):
    _want(isinstance(model, dict), "model", "a dict", model)
    layers = model.get("layers")
    _want(isinstance(layers, list) and 0 < len(layers) <= MAX_LAYERS, "model.layers",
          f"a list of 1 to {MAX_LAYERS} layer entries", layers)
    for i, entry in enumerate(layers):
        _check_layer_entry(entry, f"model.layers[{i}]")
    shape = model.get("input_shape")
    _want(shape is None or (isinstance(shape, list) and 1 <= len(shape) <= 4
                            and all(is_int(d) and 1 <= d <= 1 << 20 for d in shape)
                            and math.prod(shape) <= 1 << 31),
          "model.input_shape", "null or a list of 1 to 4 positive ints", shape)
    _want(model.get("dtype", "float32") in ("float32", "float64"), "model.dtype", "'float32' or 'float64'",
          model.get("dtype"))


def _check_optimizer_entry(opt, num):
    _want(isinstance(opt, dict), "optimizer", "null or a dict", opt)
    _check_json_numbers(opt, "optimizer")
    n = opt.get("num_buffers", 0)
    _want(is_int(n) and n in (0, num), "optimizer.num_buffers", f"0 or num_params ({num})", n)
    for key in ("lr", "momentum", "weight_decay"):
        if key in opt:
            _want(_is_number(opt[key]) and opt[key] >= 0, f"optimizer.{key}", "a finite number >= 0", opt[key])


def _check_normalizer_entry(norm):
    _want(isinstance(norm, dict), "normalizer", "null or a dict {'scalars': {...}, 'arrays': [...]}", norm)
    scalars = norm.get("scalars") or {}
    _want(isinstance(scalars, dict) and all(v is None or isinstance(v, (str, bool, int, float))
                                            for v in scalars.values()),
          "normalizer.scalars", "a dict of str, bool, number or null", scalars)
    _check_json_numbers(scalars, "normalizer.scalars")
    arrays = norm.get("arrays") or []
    _want(isinstance(arrays, list) and len(arrays) <= 64
          and all(isinstance(k, str) and _ARRAY_NAME.fullmatch(k) for k in arrays),
          "normalizer.arrays", "a list of array names", arrays)


def check_header(header):
    """ValueError naming the first entry of the JSON header that breaks the checkpoint schema."""
    num = header.get("num_params")
    _want(is_int(num) and 0 <= num <= MAX_PARAMS, "num_params", f"an int in [0, {MAX_PARAMS}]", num)
    shapes = header.get("param_shapes")
    _want(shapes is None or (isinstance(shapes, list) and len(shapes) == num and all(
        isinstance(s, list) and len(s) <= 8 and all(is_int(d) and 0 <= d <= MAX_DIM for d in s) for s in shapes)),
        "param_shapes", f"a list of {num} shapes (lists of ints >= 0)", shapes)
    buffers = header.get("buffers")
    _want(buffers is None or (isinstance(buffers, list) and len(buffers) <= 4 * MAX_PARAMS
                              and all(isinstance(b, str) and _BUFFER_KEY.fullmatch(b) for b in buffers)),
          "buffers", "null or a list of 'buffer_<i>_<name>' names", buffers)
    _check_model_entry(header.get("model"))
    if header.get("optimizer") is not None:
        _check_optimizer_entry(header["optimizer"], num)
    if header.get("normalizer") is not None:
        _check_normalizer_entry(header["normalizer"])
    for key in ("schedule", "extra"):
        _want(header.get(key) is None or isinstance(header[key], dict), key, "null or a dict", header.get(key))
    _check_json_numbers(header.get("schedule"), "schedule")
    extra = header.get("extra") or {}
    epoch = extra.get("epoch")
    _want(epoch is None or (is_int(epoch) and 0 <= epoch <= MAX_DIM), "extra.epoch", "null or an int >= 0", epoch)
    history = extra.get("history")
    _want(history is None or (isinstance(history, dict) and all(
        isinstance(v, list) and all(x is None or is_int(x) or isinstance(x, float) for x in v)
        for v in history.values())), "extra.history", "null or a dict of lists of numbers", history)


def build_cost(entry):
    """An upper bound (up to a small factor) of the values building ``entry`` allocates: 4 x the product
    of the positive ints of its config, plus its nested layers' costs."""
    cost, product = 0, 1
    for key, value in (entry.get("config") or {}).items():
        if key in LAYERS[entry["class"]].nested_config_keys and value is not None:
            cost += sum(build_cost(inner) for inner in value)
            continue
        for v in value if isinstance(value, list) else [value]:
            if is_int(v) and v > 1:
                product *= v
    return cost + 4 * product
