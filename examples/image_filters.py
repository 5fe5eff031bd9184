"""Classic image filters on an MNIST digit, with fastcnn's convolution kernel.

    python examples/image_filters.py                      # writes image_filters.png
    python examples/image_filters.py --out filters.png --index 7
    python examples/image_filters.py --tiny               # what CI runs: a temporary folder

A convolution layer is a bank of such filters, learned instead of designed.
``fastcnn.kernels.conv2d_forward`` computes a cross-correlation, as every CNN
library does: ``y[p, q] = sum_{r, s} w[r, s] * x[p + r, q + s]``.  The
mathematical convolution flips the kernel, ``y[p, q] = sum_{r, s} w[r, s] *
x[p - r, q - s]``, which is the cross-correlation with the kernel rotated by
180 degrees.  For the symmetric kernels (blur, sharpen, Laplacian) the two are
the same; for an asymmetric one they differ, and the last row of the picture
shows by how much.  The script checks the identity against a convolution
written as explicit loops.
"""

import argparse
import os
import tempfile

import numpy as np

from fastcnn.data import load_sample, to_float
from fastcnn.kernels import conv2d_forward


def gaussian(size, sigma):
    """A normalised ``size`` x ``size`` Gaussian kernel (sums to 1)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(t ** 2) / (2 * sigma ** 2))
    k = np.outer(g, g)
    return k / k.sum()


FILTERS = {
    "Gaussian blur 3x3": gaussian(3, 0.8),
    "Gaussian blur 5x5": gaussian(5, 1.2),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64),
    "Sobel x (d/dx)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64),
    "Sobel y (d/dy)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float64),
    "Laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64),
}

#: An asymmetric kernel: correlation and convolution with it differ.
ASYMMETRIC = np.array([[2, 1, 0], [1, 0, -1], [0, -1, -3]], dtype=np.float64)


def correlate(image, kernel):
    """Cross-correlate a 2-D image with a 2-D kernel, zero padding so the size is kept (odd kernels)."""
    r, s = kernel.shape
    x = image[None, None]  # (1, 1, H, W)
    w = kernel[None, None]  # (1, 1, R, S)
    return conv2d_forward(x, w, None, stride=1, padding=(r // 2, s // 2))[0, 0]


def rot180(kernel):
    """The kernel rotated by 180 degrees (flipped along both axes)."""
    return kernel[::-1, ::-1]


def true_convolution(image, kernel):
    """``y[p, q] = sum_{r, s} k[r, s] * x[p - r + R//2, q - s + S//2]``, zeros outside: explicit loops."""
    h, w = image.shape
    R, S = kernel.shape
    out = np.zeros((h, w), dtype=np.float64)
    for p in range(h):
        for q in range(w):
            total = 0.0
            for r in range(R):
                for s in range(S):
                    i, j = p - r + R // 2, q - s + S // 2
                    if 0 <= i < h and 0 <= j < w:
                        total += kernel[r, s] * image[i, j]
            out[p, q] = total
    return out


def filter_bank(image):
    """``[(title, kernel, result, kind)]`` for every filter and the correlation-vs-convolution row."""
    rows = [(name, k, correlate(image, k), "smooth" if "blur" in name or name == "sharpen" else "signed")
            for name, k in FILTERS.items()]
    gx, gy = rows[3][2], rows[4][2]
    rows.append(("gradient magnitude sqrt(gx^2 + gy^2)", None, np.hypot(gx, gy), "smooth"))

    corr = correlate(image, ASYMMETRIC)
    conv = correlate(image, rot180(ASYMMETRIC))  # convolution = correlation with rot180(kernel)
    reference = true_convolution(image, ASYMMETRIC)
    err = np.abs(conv - reference).max()
    assert err < 1e-12, f"conv2d_forward(x, rot180(k)) differs from the true convolution by {err}"
    assert np.abs(corr - conv).max() > 1e-3, "an asymmetric kernel should tell correlation and convolution apart"
    rows += [
        ("correlation with k (conv2d_forward)", ASYMMETRIC, corr, "signed"),
        ("convolution with k = correlation with rot180(k)", rot180(ASYMMETRIC), conv, "signed"),
        (f"difference (max {np.abs(corr - conv).max():.2f}; conv vs loops: {err:.0e})", None, corr - conv,
         "signed"),
    ]
    return rows


def draw(image, label, rows, path):
    """A grid: the digit, then every filter's kernel and result; written with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 4
    cells = [("input digit " + str(label), None, image, "input")] + rows
    n_rows = -(-len(cells) // cols)
    fig = Figure(figsize=(3.1 * cols, 3.0 * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    subs = fig.subfigures(n_rows, cols).ravel()
    for sub, (title, kernel, result, kind) in zip(subs, cells):
        sub.suptitle(title, fontsize=9)
        if kernel is not None:
            ax_k, ax_r = sub.subplots(1, 2, width_ratios=[1, 3])
            m = np.abs(kernel).max()
            ax_k.imshow(kernel, cmap="RdBu_r", vmin=-m, vmax=m)
            for (i, j), v in np.ndenumerate(kernel):
                if kernel.shape[0] <= 3:
                    ax_k.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=6,
                              color="white" if abs(v) > 0.6 * m else "black")
            ax_k.set_title("kernel", fontsize=8)
            ax_k.set_xticks([])
            ax_k.set_yticks([])
        else:
            ax_r = sub.subplots(1, 1)
        if kind == "signed":
            m = np.abs(result).max() or 1.0
            ax_r.imshow(result, cmap="RdBu_r", vmin=-m, vmax=m)
        else:
            ax_r.imshow(result, cmap="gray")
        ax_r.set_xticks([])
        ax_r.set_yticks([])
    for sub in subs[len(cells):]:
        sub.set_visible(False)
    fig.suptitle("classic filters with fastcnn.kernels.conv2d_forward (float64, zero padding keeps 28x28); "
                 "signed results: red +, blue -", fontsize=10)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".image-filters-", suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, metavar="PATH",
                        help="where to write the PNG (default: image_filters.png; with --tiny a temporary folder)")
    parser.add_argument("--index", type=int, default=0, help="which test image of the packaged sample (default: 0)")
    parser.add_argument("--tiny", action="store_true", help="quick check for CI: write to a temporary folder")
    args = parser.parse_args(argv)

    _, (x_test, y_test) = load_sample()
    if not 0 <= args.index < len(x_test):
        parser.error(f"--index must be in 0..{len(x_test) - 1}, got {args.index}")
    image = to_float(x_test[args.index, 0], np.float64)  # (28, 28) in [0, 1]
    rows = filter_bank(image)
    print("correlation vs convolution: conv2d_forward(x, rot180(k)) equals the loop convolution "
          "(max difference < 1e-12)")

    if args.out is None and args.tiny:
        args.out = os.path.join(tempfile.mkdtemp(prefix="fastcnn-filters-"), "image_filters.png")
    path = args.out or "image_filters.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed (pip install 'fastcnn[plot]'): no picture written")
        return None
    draw(image, int(y_test[args.index]), rows, path)
    print(f"filter grid written to {path}")
    return path


if __name__ == "__main__":
    main()
