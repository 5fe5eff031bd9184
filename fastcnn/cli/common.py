"""What the subcommands share: exit statuses and the one-line error, argument types, the model list,
threads and output files, and loading data and checkpoints.

Every failure a user can cause ends in :func:`fail`: one line
``fastcnn: error: ...`` on standard error and ``SystemExit`` with
:data:`EXIT_USAGE` (2, bad arguments) or :data:`EXIT_DATA_ERROR` /
:data:`EXIT_FAILURE` (1, missing or corrupt data or checkpoint, an output that
cannot be written, a missing optional package).
"""

import argparse
import errno
import math
import os
import stat
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import models
from .._util import TEMP_PREFIX, TEMP_SUFFIX, atomic_write

EXIT_DATA_ERROR = 1
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Where ``--data mnist|fashion-mnist`` looks when ``--data-dir`` is not given.
DATA_ENV = "FASTCNN_DATA"

#: The images every subcommand's models take: one channel of 28x28 pixels, labels 0-9.
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors on a single line, with exit status :data:`EXIT_USAGE`."""

    def parse_args(self, args=None, namespace=None):
        """``ArgumentParser.parse_args``, after making standard output and error write what they cannot encode
        as backslash escapes: a path holding bytes that are not UTF-8 arrives as surrogate escapes
        (``'\\udcff'``), and printing it must not raise UnicodeEncodeError (a traceback after the work)."""
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                try:
                    stream.reconfigure(errors="backslashreplace")
                except (ValueError, OSError):  # pragma: no cover - a stream that cannot change
                    pass
        return super().parse_args(args, namespace)

    def error(self, message):
        self.exit(EXIT_USAGE, f"fastcnn: error: {message} (see '{self.prog} --help')\n")


def fail(message, status):
    """Print ``fastcnn: error: {message}`` on standard error and exit with ``status``."""
    sys.stderr.write(f"fastcnn: error: {message}\n")
    raise SystemExit(status)


def log(message):
    """A progress line on standard error (standard output holds the results)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- argument types


def int_arg(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def nonempty(text):
    """An argument type: ``text``, refused when empty (``--data ''`` would read the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def float_arg(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _checked(parse, ok, want):
    """An argument type: ``parse(text)``, refused with ``must be {want}, got {text}`` unless ``ok(value)``."""

    def convert(text):
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    return convert


positive_int = _checked(int_arg, lambda v: v >= 1, "a positive integer")
val_fraction = _checked(float_arg, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
nonnegative_int = _checked(int_arg, lambda v: v >= 0, "a non-negative integer")
positive_float = _checked(float_arg, lambda v: v > 0, "a positive number")
nonnegative_float = _checked(float_arg, lambda v: v >= 0, "a non-negative number")
fraction = _checked(float_arg, lambda v: 0 < v < 1, "a fraction in (0, 1)")
momentum = _checked(float_arg, lambda v: 0 <= v < 1, "in [0, 1)")


# --------------------------------------------------------------------------- models


#: ``--model`` choices: the names of the :mod:`fastcnn.models` registry, sorted.
MODEL_NAMES = tuple(sorted(models.names()))


def build_model(name):
    """The network ``name`` of :mod:`fastcnn.models`, built for 1x28x28 images and 10 classes."""
    return models.build(name, num_classes=NUM_CLASSES, in_channels=IMAGE_SHAPE[0], image_size=IMAGE_SHAPE[1])


# --------------------------------------------------------------------------- threads and output files


def set_threads(threads):
    """Apply ``--threads`` (None keeps the current count); return the thread count in use."""
    import fastcnn

    if threads is not None:
        try:
            fastcnn.set_num_threads(threads)
        except (TypeError, ValueError) as exc:
            fail(f"argument --threads: {exc}", EXIT_USAGE)
    return fastcnn.get_num_threads()


def check_output(path, option):
    """Refuse, before any work, an output file that could not be written at the end.

    Refused: an empty path, a folder, a folder that does not exist, a name longer than the file system
    allows (status 2), an existing target that is not a regular file (a device such as ``/dev/null``, a
    FIFO: the atomic writer would replace it; status 2), and a folder where no file can be created (a
    temporary file is created and removed at once to find out; status 1).
    """
    if path is None:
        return
    if not path:
        fail(f"argument {option}: empty path", EXIT_USAGE)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        fail(f"argument {option}: folder {folder} does not exist", EXIT_USAGE)
    if os.path.isdir(path):
        fail(f"argument {option}: {path} is a folder", EXIT_USAGE)
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        fail(f"argument {option}: {path} exists and is not a regular file (a device, a FIFO); name a file",
             EXIT_USAGE)
    _check_writable(path, folder, option)


def _check_writable(path, folder, option):
    """Fail unless ``path``'s name fits the file system and a file can be created in ``folder``."""
    name = os.fsencode(os.path.basename(os.path.abspath(path)))
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no limit known
        longest = 255
    if len(name) > longest:
        fail(f"argument {option}: the file name is {len(name)} bytes long, more than the {longest} this file system "
             "allows", EXIT_USAGE)
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)  # cleaned as stale if left
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        fail(f"argument {option}: cannot write in folder {folder}: {exc.strerror or exc}", EXIT_FAILURE)


def check_data_dir(spec, data_dir):
    """Refuse an explicit ``--data-dir`` that ``--data spec`` would ignore (only mnist and fashion-mnist read it)."""
    if data_dir is not None and spec not in ("mnist", "fashion-mnist"):
        fail(f"argument --data-dir: only --data mnist or fashion-mnist reads it, and the data is {spec!r}; drop "
             "--data-dir, or pass --data mnist", EXIT_USAGE)


def write_error(path, exc):
    """The one-line message for an OSError writing ``path``: ``no space left on device writing PATH`` for a
    full disk, else ``cannot write PATH: reason``."""
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return f"no space left on device writing {path}"
    return f"cannot write {path}: {exc.strerror or exc}" if isinstance(exc, OSError) else f"cannot write {path}: {exc}"


def write_output(path, write):
    """``atomic_write(path, write)`` (the old file stays whole on any failure), an OSError a one-line error."""
    try:
        atomic_write(path, write)
    except OSError as exc:
        fail(write_error(path, exc), EXIT_FAILURE)


# --------------------------------------------------------------------------- data


def _find_idx_dir(name, data_dir):
    """The directory holding the IDX files of ``name`` ('mnist' or 'fashion-mnist'), or fail with a hint."""
    root = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if not root:
        fail(f"--data {name} reads the IDX files from a local folder: pass --data-dir DIR or set "
             f"{DATA_ENV}=DIR (nothing is downloaded)", EXIT_DATA_ERROR)
    root = Path(root).expanduser()
    for candidate in (root / name, root / name.replace("-", "_"), root):
        if candidate.is_dir() and any(candidate.glob("train-images*")):
            return candidate
    return root / name if (root / name).is_dir() else root


def load_data(spec, data_dir=None):
    """``(description, ((x_train, y_train), (x_test, y_test)))`` for ``--data spec``, or a one-line error.

    ``spec`` is ``"sample"`` (the packaged MNIST subset), ``"mnist"`` or
    ``"fashion-mnist"`` (IDX files under ``data_dir`` or ``$FASTCNN_DATA``), or a
    directory of MNIST IDX files.
    """
    from ..data import load_fashion_mnist, load_mnist, load_sample

    try:
        if spec == "sample":
            return "MNIST sample", load_sample()
        if spec in ("mnist", "fashion-mnist"):
            directory = _find_idx_dir(spec, data_dir)
            if spec == "fashion-mnist":
                return f"Fashion-MNIST from {directory}", load_fashion_mnist(directory)
            return f"MNIST from {directory}", load_mnist(directory)
        return f"MNIST from {spec}", load_mnist(spec)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), EXIT_DATA_ERROR)
    except OSError as exc:  # permission denied, I/O error, ...
        fail(f"cannot read MNIST data from {spec}: {exc}", EXIT_DATA_ERROR)


def check_class_scores(model, input_shape, where):
    """Fail unless ``model`` maps a ``input_shape`` image to one score per class (output ``(N, classes)``)."""
    try:
        shape = model.output_shapes(input_shape)[-1]
    except (TypeError, ValueError) as exc:
        fail(f"{where}: the model cannot take {'x'.join(map(str, input_shape))} images: {exc}", EXIT_DATA_ERROR)
    if len(shape) != 1:
        fail(f"{where}: the model's output is shaped (N, {', '.join(map(str, shape))}), not class scores (N, "
             "classes); predict and evaluate need a classifier", EXIT_DATA_ERROR)


def check_images(spec, pairs):
    """Fail unless every ``(split, (x, y))`` holds 1x28x28 images and labels 0-9."""
    for split, (x, y) in pairs:
        if x.shape[1:] != IMAGE_SHAPE:
            fail(f"{spec}: the models of 'fastcnn train' take 1x28x28 images, the {split} images are "
                 f"{x.shape[2]}x{x.shape[3]}", EXIT_DATA_ERROR)
        if len(y) and not 0 <= y.min() <= y.max() <= NUM_CLASSES - 1:
            fail(f"{spec}: expected {split} labels 0-9, got values from "
                 f"{y.min()} to {y.max()}", EXIT_DATA_ERROR)


# --------------------------------------------------------------------------- checkpoints


def load_checkpoint(path):
    """:func:`fastcnn.serialize.load_checkpoint`, or a one-line error (exit status 1)."""
    from ..serialize import load_checkpoint as load

    try:
        return load(path)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        fail(str(exc), EXIT_DATA_ERROR)
    except OSError as exc:
        fail(f"cannot read checkpoint {path}: {exc.strerror or exc}", EXIT_DATA_ERROR)


def normalize(x, state):
    """Images (uint8, or float already in [0, 1]) -> float32, standardised with a checkpoint's statistics.

    ``state`` is a checkpoint's ``normalizer_state`` (``Normalizer.state_dict()``
    of the training images, scaled to [0, 1]), or None for no standardisation.
    The images are scaled to [0, 1] first (:func:`fastcnn.data.to_float`), then
    standardised by a :class:`fastcnn.data.Normalizer` built from the same
    statistics for float input: so uint8 and float images are both accepted,
    whichever kind the statistics were fitted on (``Normalizer.transform``
    alone refuses float images for statistics fitted on uint8 ones).
    Statistics of one channel apply to every channel.
    """
    from ..data import Normalizer, to_float

    x = to_float(x, np.float32)
    if not state:
        return x
    if not isinstance(state, dict) or state.get("mean") is None or state.get("std") is None:
        fail("the checkpoint's normalisation statistics lack their mean or std", EXIT_DATA_ERROR)
    try:
        mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        fail(f"the checkpoint's normalisation statistics are unusable: {exc}", EXIT_DATA_ERROR)
    channels = x.shape[1]
    if mean.size not in (1, channels) or std.shape != mean.shape:
        fail(f"the checkpoint's normalisation statistics are for {mean.size} channel(s), the images have "
             f"{channels}", EXIT_DATA_ERROR)
    try:
        normalizer = Normalizer.from_state_dict({
            "mode": "standardize", "input_dtype": "float",
            "mean": np.broadcast_to(mean, channels), "std": np.broadcast_to(std, channels),
        })
    except ValueError as exc:
        fail(f"the checkpoint's normalisation statistics are unusable: {exc}", EXIT_DATA_ERROR)
    return normalizer.transform(x)
