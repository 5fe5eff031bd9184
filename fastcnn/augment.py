"""Data augmentation: random shifts, rotations and Gaussian noise, per image.

Three tiers, as in :mod:`fastcnn.kernels`:

* raw ``@pjit`` kernels (:func:`shift_kernel`, :func:`rotate_kernel`,
  :func:`add_noise_kernel`) that take the per-image parameters as arrays,
  write into a caller-allocated output and check nothing; one prange
  iteration owns each image;
* checked functions (:func:`shift_images`, :func:`rotate_images`,
  :func:`random_shift`, :func:`random_rotation`, :func:`gaussian_noise`) that
  validate, draw the random parameters from a :class:`numpy.random.Generator`
  *outside* the kernels, allocate and dispatch;
* :class:`Augment`, which holds the settings and the generator, and whose
  state can be saved and restored so that a resumed run draws the same
  numbers.

Images are ``(N, C, H, W)`` (or ``(N, H, W)``, returned as such).  Row index
``i`` grows downwards, column index ``j`` to the right.  Drawing every
random number outside the kernels makes the output independent of the
number of threads.
"""

import json

import numpy as np
from numba import prange

from ._util import to_jsonable
from .config import pjit

__all__ = [
    "Augment",
    "shift_images",
    "rotate_images",
    "random_shift",
    "random_rotation",
    "gaussian_noise",
    "shift_kernel",
    "rotate_kernel",
    "add_noise_kernel",
]


# --------------------------------------------------------------------------- raw kernels


@pjit
def shift_kernel(x, out, shifts):
    """Translate each image by a whole number of pixels, filling with zeros.

    ``out[n, c, i, j] = x[n, c, i - shifts[n, 0], j - shifts[n, 1]]`` where
    that index lies inside the image, else 0: a shift of ``(1, 0)`` moves the
    content one row down, ``(0, 1)`` one column to the right.

    Parameters
    ----------
    x : (N, C, H, W) array, any numeric dtype
    out : (N, C, H, W) array of x's dtype, written in full
    shifts : (N, 2) int64 array
        Row and column shift of each image.
    """
    N, C, H, W = x.shape
    zero = out.dtype.type(0)
    for n in prange(N):
        di = shifts[n, 0]
        dj = shifts[n, 1]
        for c in range(C):
            for i in range(H):
                si = i - di
                if si < 0 or si >= H:
                    for j in range(W):
                        out[n, c, i, j] = zero
                    continue
                for j in range(W):
                    sj = j - dj
                    if sj >= 0 and sj < W:
                        out[n, c, i, j] = x[n, c, si, sj]
                    else:
                        out[n, c, i, j] = zero


@pjit
def rotate_kernel(x, out, cos_t, sin_t):
    """Rotate each image about its centre, bilinear interpolation, zero fill.

    With the centre ``(ci, cj) = ((H - 1) / 2, (W - 1) / 2)`` and
    ``(y, x) = (i - ci, j - cj)``, output pixel ``(i, j)`` samples the input
    at

    .. math::

        s_i = c_i + \\cos\\theta \\, y + \\sin\\theta \\, x, \\qquad
        s_j = c_j - \\sin\\theta \\, y + \\cos\\theta \\, x

    by bilinear interpolation, where samples outside the image count as 0.
    A positive angle turns the picture counter-clockwise as displayed (row 0
    at the top), so 90 degrees on a square image is ``np.rot90``.

    Parameters
    ----------
    x : (N, C, H, W) float array
    out : (N, C, H, W) float array of x's dtype, written in full
    cos_t, sin_t : (N,) float arrays of x's dtype
        Cosine and sine of each image's angle.
    """
    N, C, H, W = x.shape
    t = x.dtype.type
    zero = t(0)
    one = t(1)
    ci = t(H - 1) / t(2)
    cj = t(W - 1) / t(2)
    for n in prange(N):
        ct = cos_t[n]
        st = sin_t[n]
        for i in range(H):
            yi = t(i) - ci
            for j in range(W):
                xj = t(j) - cj
                sy = ci + ct * yi + st * xj
                sx = cj - st * yi + ct * xj
                fy0 = np.floor(sy)
                fx0 = np.floor(sx)
                fy = sy - fy0
                fx = sx - fx0
                y0 = int(fy0)
                x0 = int(fx0)
                y1 = y0 + 1
                x1 = x0 + 1
                in_y0 = y0 >= 0 and y0 < H
                in_y1 = y1 >= 0 and y1 < H
                in_x0 = x0 >= 0 and x0 < W
                in_x1 = x1 >= 0 and x1 < W
                w00 = (one - fy) * (one - fx)
                w01 = (one - fy) * fx
                w10 = fy * (one - fx)
                w11 = fy * fx
                for c in range(C):
                    acc = zero
                    if in_y0 and in_x0:
                        acc += w00 * x[n, c, y0, x0]
                    if in_y0 and in_x1:
                        acc += w01 * x[n, c, y0, x1]
                    if in_y1 and in_x0:
                        acc += w10 * x[n, c, y1, x0]
                    if in_y1 and in_x1:
                        acc += w11 * x[n, c, y1, x1]
                    out[n, c, i, j] = acc


@pjit
def add_noise_kernel(x, z, std, out):
    """``out = x + std * z`` elementwise, one prange iteration per image.

    Parameters
    ----------
    x : (N, ...) float array, C-contiguous
    z : float array of x's shape and dtype (standard normal draws)
    std : float of x's dtype
    out : float array of x's shape and dtype, written in full
    """
    N = x.shape[0]
    M = x.size // N if N > 0 else 0
    xf = x.reshape((N, M))
    zf = z.reshape((N, M))
    of = out.reshape((N, M))
    for n in prange(N):
        for m in range(M):
            of[n, m] = xf[n, m] + std * zf[n, m]


# --------------------------------------------------------------------------- checks


def _as_generator(rng, fn, name="rng"):
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"{fn}: {name} must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def _as_images(x, fn, need_float=False):
    """(N, C, H, W) C-contiguous view of ``x`` and whether it came as (N, H, W)."""
    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{fn}: x must be images of shape (N, C, H, W) or (N, H, W), got shape {x.shape}"
        )
    if x.dtype.kind not in "uif" or x.dtype == np.float16:
        raise TypeError(f"{fn}: x must be numeric (uint8, int or float32/float64), got dtype {x.dtype}")
    if need_float and x.dtype.kind != "f":
        raise TypeError(
            f"{fn}: x must be float32 or float64, got dtype {x.dtype}; convert first "
            "(fastcnn.data.to_float or Normalizer)"
        )
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    squeeze = x.ndim == 3
    x4 = np.ascontiguousarray(x[:, None] if squeeze else x)
    return x4, squeeze


def _finish(out, squeeze):
    return out[:, 0] if squeeze else out


def _pair(value, name, fn):
    """Non-negative int or pair of ints -> (int, int)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints (rows, cols), got {value!r}")
    if pair[0] < 0 or pair[1] < 0:
        raise ValueError(f"{fn}: {name} must be >= 0, got {value!r}")
    return pair


def _nonneg_float(value, name, fn):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{fn}: {name} must be a finite number >= 0, got {value}")
    return value


# --------------------------------------------------------------------------- checked functions


def shift_images(x, shifts):
    """Translate each image by whole pixels, filling with zeros.

    Parameters
    ----------
    x : array_like, (N, C, H, W) or (N, H, W), any numeric dtype
    shifts : array_like of int, (N, 2) or (2,)
        ``(rows, cols)`` shift per image (or one for all): positive rows move
        the content down, positive columns to the right.  Shifts of the image
        size or more give an all-zero image.

    Returns
    -------
    numpy.ndarray
        A new array of x's shape and dtype:
        ``out[n, c, i, j] = x[n, c, i - shifts[n, 0], j - shifts[n, 1]]``, 0
        outside the image.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import shift_images
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    >>> shift_images(x, (1, 0))[0]
    array([[0., 0., 0.],
           [0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    x4, squeeze = _as_images(x, "shift_images")
    N = x4.shape[0]
    s = np.asarray(shifts)
    if s.dtype.kind not in "iu":
        raise TypeError(f"shift_images: shifts must be integers, got dtype {s.dtype}")
    if s.shape == (2,):
        s = np.broadcast_to(s, (N, 2))
    if s.shape != (N, 2):
        raise ValueError(f"shift_images: shifts must have shape ({N}, 2) or (2,), got {s.shape}")
    s = np.ascontiguousarray(s, dtype=np.int64)
    out = np.empty_like(x4)
    if N:
        shift_kernel(x4, out, s)
    return _finish(out, squeeze)


def rotate_images(x, degrees):
    """Rotate each image about its centre (bilinear interpolation, zero fill).

    Parameters
    ----------
    x : array_like, (N, C, H, W) or (N, H, W), float32 or float64
    degrees : float or array_like, () or (N,)
        Angle per image (or one for all); positive turns the picture
        counter-clockwise as displayed, so 90 on a square image equals
        ``np.rot90(image)`` (up to rounding).  The sampling rule is given in
        :func:`rotate_kernel`.

    Returns
    -------
    numpy.ndarray
        A new array of x's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import rotate_images
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    >>> np.allclose(rotate_images(x, 90.0)[0], np.rot90(x[0]), atol=1e-5)
    True
    """
    x4, squeeze = _as_images(x, "rotate_images", need_float=True)
    N = x4.shape[0]
    d = np.asarray(degrees, dtype=np.float64)
    if d.ndim == 0:
        d = np.full(N, float(d))
    if d.shape != (N,):
        raise ValueError(f"rotate_images: degrees must be a number or have shape ({N},), got {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("rotate_images: degrees must be finite")
    rad = np.deg2rad(d)
    cos_t = np.cos(rad).astype(x4.dtype)
    sin_t = np.sin(rad).astype(x4.dtype)
    out = np.empty_like(x4)
    if N:
        rotate_kernel(x4, out, cos_t, sin_t)
    return _finish(out, squeeze)


def _draw_shifts(rng, n, max_shift):
    mh, mw = max_shift
    return rng.integers((-mh, -mw), (mh, mw), size=(n, 2), endpoint=True, dtype=np.int64)


def _draw_angles(rng, n, max_degrees):
    return rng.uniform(-max_degrees, max_degrees, size=n)


def _noise(x4, std, rng):
    z = rng.standard_normal(size=x4.shape, dtype=x4.dtype)
    out = np.empty_like(x4)
    if x4.shape[0]:
        add_noise_kernel(x4, z, x4.dtype.type(std), out)
    return out


def random_shift(x, max_shift, rng=None):
    """Shift each image by random whole pixels, drawn uniformly in ``[-max_shift, max_shift]``.

    Parameters
    ----------
    x : array_like, (N, C, H, W) or (N, H, W), any numeric dtype
    max_shift : int or (int, int)
        Largest shift in rows and columns (one int for both).
    rng : numpy.random.Generator, int or None
        Source of the shifts (an int seeds a new generator).

    Returns
    -------
    numpy.ndarray
        A new array of x's shape and dtype (see :func:`shift_images`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import random_shift
    >>> x = np.ones((4, 1, 5, 5), dtype=np.float32)
    >>> y = random_shift(x, 2, np.random.default_rng(0))
    >>> y.shape, y.dtype
    ((4, 1, 5, 5), dtype('float32'))
    """
    m = _pair(max_shift, "max_shift", "random_shift")
    rng = _as_generator(rng, "random_shift")
    x4, squeeze = _as_images(x, "random_shift")
    return _finish(shift_images(x4, _draw_shifts(rng, x4.shape[0], m)), squeeze)


def random_rotation(x, max_degrees, rng=None):
    """Rotate each image by a random angle drawn uniformly in ``[-max_degrees, max_degrees]``.

    Parameters
    ----------
    x : array_like, (N, C, H, W) or (N, H, W), float32 or float64
    max_degrees : float
        Largest angle in degrees, >= 0.
    rng : numpy.random.Generator, int or None
        Source of the angles (an int seeds a new generator).

    Returns
    -------
    numpy.ndarray
        A new array of x's shape and dtype (see :func:`rotate_images`).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import random_rotation
    >>> x = np.ones((4, 1, 5, 5), dtype=np.float32)
    >>> random_rotation(x, 15.0, np.random.default_rng(0)).dtype
    dtype('float32')
    """
    d = _nonneg_float(max_degrees, "max_degrees", "random_rotation")
    rng = _as_generator(rng, "random_rotation")
    x4, squeeze = _as_images(x, "random_rotation", need_float=True)
    return _finish(rotate_images(x4, _draw_angles(rng, x4.shape[0], d)), squeeze)


def gaussian_noise(x, std, rng=None):
    """Add independent Gaussian noise of standard deviation ``std`` to every pixel.

    Parameters
    ----------
    x : array_like, (N, C, H, W) or (N, H, W), float32 or float64
    std : float
        Standard deviation, >= 0.
    rng : numpy.random.Generator, int or None
        Source of the noise (drawn in x's dtype; an int seeds a new generator).

    Returns
    -------
    numpy.ndarray
        ``x + std * z`` with ``z`` standard normal, a new array of x's shape
        and dtype.  Values are not clipped.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import gaussian_noise
    >>> y = gaussian_noise(np.zeros((100, 1, 28, 28), np.float32), 0.1, np.random.default_rng(0))
    >>> round(float(y.std()), 2), y.dtype
    (0.1, dtype('float32'))
    """
    s = _nonneg_float(std, "std", "gaussian_noise")
    rng = _as_generator(rng, "gaussian_noise")
    x4, squeeze = _as_images(x, "gaussian_noise", need_float=True)
    return _finish(_noise(x4, s, rng), squeeze)


# --------------------------------------------------------------------------- Augment


def _to_str(value):
    """A str from a str or a 0-d numpy string array (as read back from an .npz)."""
    if isinstance(value, np.ndarray):
        value = value[()]
    return str(value)


class Augment:
    """Random per-image augmentation for a training batch.

    Each call applies, in this order and per image, a random shift (whole
    pixels, uniform in ``[-shift, shift]`` rows and columns), a random
    rotation (uniform in ``[-rotation, rotation]`` degrees, bilinear, about
    the centre) and Gaussian noise of standard deviation ``noise``; a setting
    of 0 skips that step.  All random numbers come from one
    :class:`numpy.random.Generator`, drawn outside the kernels, so the same
    seed gives the same output whatever the number of threads.

    Parameters
    ----------
    shift : int or (int, int), default 0
        Largest shift in pixels (rows, cols).
    rotation : float, default 0.0
        Largest angle in degrees.
    noise : float, default 0.0
        Standard deviation of the added noise (in the units of the input,
        e.g. after :class:`fastcnn.data.Normalizer`).
    seed : int, numpy.random.Generator or None
        Seed of the generator (a Generator is used as is).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import Augment
    >>> aug = Augment(shift=2, rotation=10.0, noise=0.05, seed=0)
    >>> batch = np.zeros((8, 1, 28, 28), dtype=np.float32)
    >>> out = aug(batch)
    >>> out.shape, out.dtype
    ((8, 1, 28, 28), dtype('float32'))
    >>> resumed = Augment.from_state_dict(aug.state_dict())
    >>> np.array_equal(aug(batch), resumed(batch))
    True
    """

    def __init__(self, shift=0, rotation=0.0, noise=0.0, seed=None):
        self.shift = _pair(shift, "shift", "Augment")
        self.rotation = _nonneg_float(rotation, "rotation", "Augment")
        self.noise = _nonneg_float(noise, "noise", "Augment")
        self.rng = _as_generator(seed, "Augment", "seed")

    def __call__(self, x_batch):
        """Return an augmented copy of ``x_batch`` ((N, C, H, W) or (N, H, W); same shape and dtype).

        Rotation and noise need float32/float64 input; with every setting 0
        the result is an exact copy.
        """
        need_float = self.rotation > 0 or self.noise > 0
        x4, squeeze = _as_images(x_batch, "Augment", need_float=need_float)
        n = x4.shape[0]
        out = x4.copy()
        if self.shift != (0, 0):
            out = shift_images(out, _draw_shifts(self.rng, n, self.shift))
        if self.rotation > 0:
            out = rotate_images(out, _draw_angles(self.rng, n, self.rotation))
        if self.noise > 0:
            out = _noise(out, self.noise, self.rng)
        return _finish(out, squeeze)

    def state_dict(self):
        """Settings and generator state as numpy arrays and strings (safe for ``np.savez``).

        Returns
        -------
        dict
            ``shift`` (int64 (2,)), ``rotation`` and ``noise`` (float64 0-d
            arrays) and ``rng_state`` (JSON text of
            ``rng.bit_generator.state``).
        """
        return {
            "shift": np.array(self.shift, dtype=np.int64),
            "rotation": np.array(self.rotation, dtype=np.float64),
            "noise": np.array(self.noise, dtype=np.float64),
            "rng_state": json.dumps(to_jsonable(self.rng.bit_generator.state)),
        }

    def load_state_dict(self, state):
        """Restore settings and generator state from :meth:`state_dict` output (in place)."""
        missing = [k for k in ("shift", "rotation", "noise", "rng_state") if k not in state]
        if missing:
            raise ValueError(
                f"Augment.load_state_dict: missing keys {missing}; got keys {sorted(state)}"
            )
        shift = tuple(int(v) for v in np.asarray(state["shift"]).reshape(-1))
        self.shift = _pair(shift, "shift", "Augment.load_state_dict")
        self.rotation = _nonneg_float(float(np.asarray(state["rotation"])), "rotation", "Augment.load_state_dict")
        self.noise = _nonneg_float(float(np.asarray(state["noise"])), "noise", "Augment.load_state_dict")
        try:
            rng_state = json.loads(_to_str(state["rng_state"]))
            bit_generator = getattr(np.random, rng_state["bit_generator"])()
            bit_generator.state = rng_state
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"Augment.load_state_dict: rng_state is not a saved numpy bit-generator state: {exc}"
            ) from None
        self.rng = np.random.Generator(bit_generator)
        return self

    @classmethod
    def from_state_dict(cls, state):
        """A new :class:`Augment` from :meth:`state_dict` output."""
        return cls().load_state_dict(state)

    def __repr__(self):
        parts = []
        if self.shift != (0, 0):
            parts.append(f"shift={self.shift[0] if self.shift[0] == self.shift[1] else self.shift}")
        if self.rotation:
            parts.append(f"rotation={self.rotation}")
        if self.noise:
            parts.append(f"noise={self.noise}")
        return f"Augment({', '.join(parts)})"
