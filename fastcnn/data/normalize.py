"""Images to float32: :func:`to_float` (uint8 divided by 255) and :class:`Normalizer` (statistics of the training set).

The arithmetic of the standardisation, ``(x * scale - mean) / std`` per
channel, is :func:`fastcnn.layers.norm.normalize`, which the
:class:`~fastcnn.layers.Normalize` layer uses too.
"""

import numpy as np

from ..layers.norm import Normalize, normalize

__all__ = ["to_float", "Normalizer"]


def to_float(x, dtype=np.float32):
    """Convert images to floating point.

    Parameters
    ----------
    x : array_like
        Images.  uint8 arrays are scaled to ``[0, 1]`` (divided by 255);
        floating-point arrays are cast to ``dtype`` with their values
        unchanged.
    dtype : numpy dtype, default numpy.float32
        A floating-point dtype.

    Returns
    -------
    numpy.ndarray
        An array of ``dtype`` with the shape of ``x``.

    Raises
    ------
    TypeError
        If ``dtype`` is not a floating-point dtype or ``x`` is neither uint8
        nor floating point.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import to_float
    >>> to_float(np.array([0, 51, 255], dtype=np.uint8))
    array([0. , 0.2, 1. ], dtype=float32)
    >>> to_float(np.array([0.5, 2.0]), dtype=np.float64)
    array([0.5, 2. ])
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"to_float: dtype must be a floating-point dtype, got {dtype}")
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(dtype) / dtype.type(255)
    if x.dtype.kind == "f":
        return x.astype(dtype, copy=False)
    raise TypeError(
        f"to_float: expected uint8 or floating-point images, got dtype {x.dtype}"
    )


_NORMALIZER_MODES = ("scale", "standardize")


def _as_nchw(x, fn):
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"{fn}: x must be images (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if not (x.dtype == np.uint8 or x.dtype.kind == "f"):
        raise TypeError(f"{fn}: x must be uint8 or floating point, got dtype {x.dtype}")
    return x


def _str_of(value):
    if isinstance(value, np.ndarray):
        value = value[()]
    return str(value)


def _check_mode(mode):
    if mode not in _NORMALIZER_MODES:
        raise ValueError(f"Normalizer: mode must be one of {_NORMALIZER_MODES}, got {mode!r}")
    return mode


def _parse_state(state, fn):
    """``(mode, input_dtype, mean, std)`` of a :meth:`Normalizer.state_dict`, checked; ``fn`` names the caller."""
    missing = [k for k in ("mode", "input_dtype", "mean", "std") if k not in state]
    if missing:
        raise ValueError(f"{fn}: missing keys {missing}; got keys {sorted(state)}")
    mode = _check_mode(_str_of(state["mode"]))
    input_dtype = _str_of(state["input_dtype"])
    if input_dtype not in ("uint8", "float"):
        raise ValueError(f"{fn}: input_dtype must be 'uint8' or 'float', got {input_dtype!r}")
    mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
    std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
    if mean.shape != std.shape or mean.size == 0:
        raise ValueError(f"{fn}: mean and std must be equal-length 1-D, got {mean.shape} and {std.shape}")
    if not np.all(std > 0):
        raise ValueError(f"{fn}: std must be > 0")
    return mode, input_dtype, mean, std


class Normalizer:
    """Scale or standardise images with statistics fitted on training data only.

    ``mode="scale"``: uint8 images are divided by 255 (to ``[0, 1]``),
    floating-point images keep their values.  ``mode="standardize"``: after
    that scaling, each channel ``c`` becomes ``(x - mean[c]) / std[c]`` with
    the mean and (population) standard deviation over all images and pixels
    seen by :meth:`fit`; a channel with standard deviation 0 gets 1.  The
    output is always float32.

    :meth:`fit` records whether it saw uint8 or float input and the number
    of channels; :meth:`transform` refuses input that differs, since
    statistics of uint8 pixels do not fit float pixels (``transform(x,
    strict=False)`` accepts both kinds: uint8 pixels divided by 255, float
    pixels as they are).
    The arithmetic is :func:`fastcnn.layers.norm.normalize`, the one the
    :class:`~fastcnn.layers.Normalize` layer of :meth:`as_layer` uses.

    Parameters
    ----------
    mode : {"scale", "standardize"}, default "scale"

    Attributes
    ----------
    mean, std : numpy.ndarray or None
        float64 ``(C,)``, after :meth:`fit` (0 and 1 in ``"scale"`` mode).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.data import Normalizer
    >>> x_train = np.array([[[[0, 255]]], [[[255, 255]]]], dtype=np.uint8)  # (2, 1, 1, 2)
    >>> norm = Normalizer("standardize").fit(x_train)
    >>> norm.mean.round(4).tolist(), norm.std.round(4).tolist()
    ([0.75], [0.433])
    >>> norm.transform(x_train).dtype
    dtype('float32')
    >>> state = norm.state_dict()          # numpy arrays and strings, np.savez-safe
    >>> Normalizer.from_state_dict(state)
    Normalizer(mode='standardize', mean=[0.75], std=[0.433])
    >>> loaded = Normalizer().load_state_dict(state)  # float pixels in [0, 1] too, with strict=False
    >>> loaded.transform(np.array([[[[0.0, 1.0]]]]), strict=False)
    array([[[[-1.7320509 ,  0.57735026]]]], dtype=float32)
    """

    def __init__(self, mode="scale"):
        self.mode = _check_mode(mode)
        self.mean = None
        self.std = None
        self.input_dtype = None

    @property
    def fitted(self):
        """Whether :meth:`fit` (or :meth:`load_state_dict`, :meth:`from_state_dict`) has set the statistics."""
        return self.mean is not None

    def fit(self, x):
        """Compute the statistics from training images ``x`` ((N, C, H, W) or (N, H, W), uint8 or float).

        Two passes in float64 over chunks of images, so no float copy of the
        whole set is made.  Returns ``self``.
        """
        x = _as_nchw(x, "Normalizer.fit")
        if len(x) == 0:
            raise ValueError("Normalizer.fit: x holds no images")
        C = x.shape[1]
        self.input_dtype = "uint8" if x.dtype == np.uint8 else "float"
        if self.mode == "scale":
            self.mean = np.zeros(C)
            self.std = np.ones(C)
            return self
        scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
        chunk = max(1, 4_000_000 // max(1, x[0].size))
        count = x.shape[0] * x.shape[2] * x.shape[3]
        total = np.zeros(C)
        for k in range(0, len(x), chunk):
            total += x[k:k + chunk].sum(axis=(0, 2, 3), dtype=np.float64)
        raw_mean = total / count  # in input units: exact for a constant uint8 channel
        sq = np.zeros(C)
        for k in range(0, len(x), chunk):
            d = x[k:k + chunk].astype(np.float64) - raw_mean[None, :, None, None]
            sq += np.einsum("nchw,nchw->c", d, d)
        mean = raw_mean * scale
        std = np.sqrt(sq / count) * scale
        # constant channels (up to float64 rounding of the mean) get std 1
        constant = ~(std > 1e-9 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny))
        std[constant] = 1.0
        self.mean, self.std = mean, std
        return self

    def transform(self, x, strict=True):
        """Normalise images with the fitted statistics.

        Parameters
        ----------
        x : numpy.ndarray, uint8 or floating point, (N, C, H, W) or (N, H, W)
            Not modified.  uint8 pixels are divided by 255 first (:func:`to_float`).
        strict : bool, default True
            Refuse images of the other kind (uint8 or float) than :meth:`fit`
            saw.  With False both kinds are accepted: uint8 pixels are divided
            by 255 and float pixels are taken as they are, so float images must
            already be in the units of the statistics (``[0, 1]`` for statistics
            fitted on uint8 images).

        Returns
        -------
        numpy.ndarray
            float32, the shape of ``x``: ``to_float(x)`` in ``"scale"`` mode,
            ``(to_float(x) - mean[c]) / std[c]`` per channel in
            ``"standardize"`` mode (mean and std rounded to float32 first).

        Raises
        ------
        RuntimeError
            If the normalizer is not fitted.
        ValueError
            If ``x`` has another number of channels than :meth:`fit` saw, or,
            with ``strict``, another kind (uint8 or float).
        """
        if not self.fitted:
            raise RuntimeError("Normalizer.transform: call fit(x_train) first (or load a state_dict)")
        arr = np.asarray(x)
        x4 = _as_nchw(arr, "Normalizer.transform")
        kind = "uint8" if x4.dtype == np.uint8 else "float"
        if strict and kind != self.input_dtype:
            raise ValueError(
                f"Normalizer.transform: fitted on {self.input_dtype} images but got {x4.dtype}; "
                "transform data of the same kind as the training data"
            )
        if x4.shape[1] != len(self.mean):
            raise ValueError(
                f"Normalizer.transform: fitted on {len(self.mean)} channel(s) but x has "
                f"{x4.shape[1]} (shape {arr.shape})"
            )
        out = to_float(x4, np.float32)
        if self.mode == "standardize":
            out = normalize(out, self.mean.astype(np.float32), self.std.astype(np.float32))
        elif out is x4 or np.shares_memory(out, arr):
            out = out.copy()
        return out.reshape(arr.shape)

    def as_layer(self, dtype=None):
        """This normalisation as a :class:`fastcnn.layers.Normalize` layer, to put first in a model.

        The model then takes raw images (uint8 or float, as ``fit`` saw them) in ``fit``, ``evaluate``
        and ``predict``, and its checkpoints carry the statistics.

        The layer multiplies by ``scale = 1/255`` where :meth:`transform`
        divides by 255, so on uint8 images the two may differ in the last
        bits.  For float images, the default float32 layer's ``forward`` of
        ``x.astype(np.float32)`` is exactly ``transform(x)``.

        Examples
        --------
        >>> import numpy as np
        >>> import fastcnn
        >>> x = np.random.default_rng(0).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
        >>> norm = Normalizer("standardize").fit(x)
        >>> model = fastcnn.Sequential(norm.as_layer(), *fastcnn.models.lenet5().layers, input_shape=(1, 28, 28))
        >>> bool(np.allclose(model.layers[0].forward(x.astype(np.float32)), norm.transform(x), atol=1e-5))
        True
        """
        if not self.fitted:
            raise RuntimeError("Normalizer.as_layer: call fit(x_train) first")
        scale = 1.0 / 255.0 if self.input_dtype == "uint8" else 1.0
        return Normalize(len(self.mean), scale=scale, mean=self.mean, std=self.std, dtype=dtype)

    def fit_transform(self, x):
        """:meth:`fit` on ``x`` then :meth:`transform` it."""
        return self.fit(x).transform(x)

    def state_dict(self):
        """The fitted state as numpy arrays and strings only (safe for ``np.savez`` without pickle).

        Returns
        -------
        dict
            ``mode`` and ``input_dtype`` (str), ``mean`` and ``std`` (float64 ``(C,)``).
        """
        if not self.fitted:
            raise RuntimeError("Normalizer.state_dict: call fit(x_train) first")
        return {
            "mode": self.mode,
            "input_dtype": self.input_dtype,
            "mean": self.mean.copy(),
            "std": self.std.copy(),
        }

    def load_state_dict(self, state):
        """Take the mode and statistics of :meth:`state_dict` output; returns ``self``, now fitted.

        Parameters
        ----------
        state : mapping
            ``mode`` and ``input_dtype`` (str, or 0-d numpy arrays as ``np.load``
            returns them), ``mean`` and ``std`` (array-like ``(C,)``, ``std > 0``).

        Raises
        ------
        ValueError
            If a key is missing or a value is invalid; ``self`` is then unchanged.
        """
        self.mode, self.input_dtype, self.mean, self.std = _parse_state(state, "Normalizer.load_state_dict")
        return self

    @classmethod
    def from_state_dict(cls, state):
        """A fitted :class:`Normalizer` from :meth:`state_dict` output (strings may be 0-d numpy arrays)."""
        norm = cls()
        norm.mode, norm.input_dtype, norm.mean, norm.std = _parse_state(state, "Normalizer.from_state_dict")
        return norm

    def __repr__(self):
        if self.mode == "scale" or not self.fitted:
            return f"Normalizer(mode={self.mode!r})"
        fmt = lambda a: "[" + ", ".join(f"{v:.4g}" for v in a) + "]"  # noqa: E731
        return f"Normalizer(mode={self.mode!r}, mean={fmt(self.mean)}, std={fmt(self.std)})"
