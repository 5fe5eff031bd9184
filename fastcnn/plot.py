"""Pictures of a network: training curves, learned filters and feature maps.

Every function draws on matplotlib's Agg canvas (a ``matplotlib.figure.Figure``
with a ``FigureCanvasAgg``: no pyplot state, no display needed), writes a PNG
to ``path`` atomically (``fastcnn._util.atomic_write``: a temporary file in
the same folder, moved into place with ``os.replace``, so a reader never sees
half a picture; the file gets the umask's mode) and returns the path.  matplotlib is imported inside the functions, never when fastcnn is
imported; without it they raise ImportError saying
``pip install 'fastcnn[plot]'``.

Examples
--------
>>> import os, tempfile
>>> import fastcnn
>>> from fastcnn import plot
>>> folder = tempfile.mkdtemp()
>>> model = fastcnn.models.lenet5()
>>> path = plot.plot_filters(model, os.path.join(folder, "filters.png"))  # doctest: +SKIP
>>> history = {"loss": [0.9, 0.4], "accuracy": [0.7, 0.9], "lr": [0.05, 0.05]}
>>> path = plot.plot_history(history, os.path.join(folder, "curves.png"))  # doctest: +SKIP
"""

import numpy as np

from ._util import atomic_write, require_matplotlib

__all__ = ["plot_history", "plot_filters", "plot_feature_maps", "conv_layers", "require_matplotlib"]

#: At most this many input channels are drawn one row each by :func:`plot_filters`; more are averaged.
MAX_INPUT_ROWS = 8

#: At most this many channels per stage are drawn by :func:`plot_feature_maps`.
MAX_CHANNELS = 16


def _figure(figsize, layout="constrained"):
    """A Figure on an Agg canvas (no pyplot); constrained layout unless ``layout=None``.

    Grids of many small images are placed by hand (``layout=None``): constrained
    layout takes seconds for a hundred axes.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi=100):
    """Write ``fig`` as a PNG to ``path`` atomically; return the path (a str)."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def _series(values):
    """A history list as float64, None -> NaN."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


# --------------------------------------------------------------------------- training curves


def plot_history(history, path):
    """Loss and accuracy per epoch, training and validation, as a PNG.

    Two panels, loss and accuracy (in percent), each with the training curve
    and, when the history has ``val_loss`` / ``val_accuracy``, the validation
    curve.  The learning rate goes in a third panel (log scale) when it changed
    during training, in the title when it did not.

    Parameters
    ----------
    history : dict of str -> list
        A ``Sequential.fit`` history (``loss``, and optionally ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``lr``, ``epoch``), e.g. a
        checkpoint's ``load_checkpoint(path)["history"]``.  None entries are
        gaps.
    path : str or os.PathLike
        Where to write the PNG.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If the history has no ``loss`` values.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> from fastcnn.plot import plot_history
    >>> plot_history({"loss": [0.9, 0.4], "val_loss": [0.8, 0.5]}, "curves.png")  # doctest: +SKIP
    'curves.png'
    """
    if not isinstance(history, dict):
        raise TypeError(f"plot_history: history must be a dict of per-epoch lists, got {type(history).__name__}")
    if not history.get("loss"):
        raise ValueError(f"plot_history: the history has no 'loss' values to plot (keys: {sorted(history)})")
    n = len(history["loss"])
    epochs = history.get("epoch")
    if epochs is None or len(epochs) != n or any(e is None for e in epochs):
        epochs = range(1, n + 1)
    epochs = np.asarray(list(epochs), dtype=np.float64)

    lr = _series(history.get("lr") or [])
    finite_lr = lr[np.isfinite(lr)]
    lr_changed = finite_lr.size > 1 and finite_lr.min() != finite_lr.max()
    panels = [("loss", "loss", 1.0), ("accuracy", "accuracy (%)", 100.0)]
    panels = [p for p in panels if history.get(p[0]) or history.get("val_" + p[0])]
    fig = _figure((4.2 * (len(panels) + lr_changed), 3.4))
    axes = fig.subplots(1, len(panels) + lr_changed, squeeze=False)[0]
    for ax, (key, label, scale) in zip(axes, panels):
        for prefix, name, style in (("", "training", "-o"), ("val_", "validation", "--s")):
            values = history.get(prefix + key)
            if values:
                y = _series(values) * scale
                ax.plot(epochs[: len(y)], y, style, markersize=4, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if lr_changed:
        ax = axes[-1]
        ax.plot(epochs[: len(lr)], lr, "-o", markersize=4, color="tab:green")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title("learning rate")
        ax.grid(alpha=0.3, which="both")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    title = f"training curves, {n} epoch{'s' if n != 1 else ''}"
    if finite_lr.size and not lr_changed:
        title += f", lr {finite_lr[0]:g}"
    fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- filters


def conv_layers(model):
    """The Conv2d layers :func:`plot_filters` can draw: those of a Sequential's ``layers``, in order.

    A Conv2d itself gives ``[model]``; anything else ``[]``.

    Examples
    --------
    >>> import fastcnn
    >>> from fastcnn.plot import conv_layers
    >>> len(conv_layers(fastcnn.models.lenet5()))
    2
    """
    from .layers import Conv2d

    layers = getattr(model, "layers", None)
    if layers is None:
        return [model] if isinstance(model, Conv2d) else []
    return [layer for layer in layers if isinstance(layer, Conv2d)]


def plot_filters(model_or_conv, path, layer=0):
    """A convolution layer's learned kernels as a grid of small grayscale images.

    One column per output channel (filter).  A layer with one input channel
    draws each kernel once (wrapping after 8 columns: row "8-15", column "+2"
    is filter 10); with up to
    ``MAX_INPUT_ROWS`` (8) input channels, each input channel is a row; with
    more, the row shows the mean over the input channels.  One symmetric
    colour scale for the whole grid, ``[-max|w|, +max|w|]``: zero is mid grey,
    positive weights light, negative dark.

    Parameters
    ----------
    model_or_conv : Sequential or Conv2d
    path : str or os.PathLike
        Where to write the PNG.
    layer : int, default 0
        Which Conv2d of a Sequential, counting convolutions only (0 is the
        first); ignored for a Conv2d.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If the model has no Conv2d, or ``layer`` is out of range.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import fastcnn
    >>> from fastcnn.plot import plot_filters
    >>> plot_filters(fastcnn.models.lenet5(), "filters.png", layer=1)  # doctest: +SKIP
    'filters.png'
    """
    convs = conv_layers(model_or_conv)
    if not convs:
        raise ValueError(f"plot_filters: expected a Conv2d or a Sequential holding one, got "
                         f"{type(model_or_conv).__name__} with no Conv2d layer")
    if not isinstance(layer, (int, np.integer)) or not -len(convs) <= layer < len(convs):
        raise ValueError(f"plot_filters: layer must be an index among the model's {len(convs)} Conv2d "
                         f"layer(s), 0 to {len(convs) - 1}; got {layer!r}")
    conv = convs[layer]
    w = np.asarray(conv.weight.data, dtype=np.float64)  # (K, C, R, S)
    k, c, kh, kw = w.shape
    if c == 1:
        cols = min(k, 8)
        grid = [[w[i, 0] for i in range(r, min(r + cols, k))] for r in range(0, k, cols)]
        col_labels = [str(i) for i in range(cols)] if k <= cols else [f"+{i}" for i in range(cols)]
        row_labels = [] if k <= cols else [f"{r}-{min(r + cols, k) - 1}" for r in range(0, k, cols)]
    elif c <= MAX_INPUT_ROWS:
        cols = k
        grid = [[w[i, j] for i in range(k)] for j in range(c)]  # row j: input channel j
        row_labels, col_labels = [f"in {j}" for j in range(c)], [str(i) for i in range(k)]
    else:
        cols = k
        grid = [[w[i].mean(axis=0) for i in range(k)]]
        row_labels, col_labels = [f"mean of\n{c} in"], [str(i) for i in range(k)]
    mosaic, gap = _mosaic(grid, cols)
    vmax = float(np.nanmax(np.abs(mosaic))) or 1.0  # of what is drawn: the means in the last case
    rows = len(grid)
    cell = 0.7  # inches per kernel
    width, height = max(4.0, cell * cols + 1.9), cell * rows + 1.1
    fig = _figure((width, height), layout=None)
    ax = fig.add_axes((0.8 / width, 0.15 / height, 1 - 1.9 / width, 1 - 1.05 / height))
    image = ax.imshow(np.ma.masked_invalid(mosaic), cmap=_with_bad("gray"), vmin=-vmax, vmax=vmax,
                      interpolation="nearest")
    ax.set_xticks([i * (kw + gap) + (kw - 1) / 2 for i in range(len(col_labels))], col_labels, fontsize=8)
    ax.set_yticks([j * (kh + gap) + (kh - 1) / 2 for j in range(len(row_labels))], row_labels, fontsize=8)
    ax.set_anchor("N")
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    bar = fig.add_axes((1 - 0.95 / width, 0.15 / height, 0.12 / width, 1 - 1.05 / height))
    fig.colorbar(image, cax=bar, label="weight")
    fig.suptitle(f"filters of conv layer {layer}: {conv!r}, weight {tuple(conv.weight.shape)}\n"
                 f"{'one kernel per output channel' if c == 1 else 'columns: output channels'}; "
                 f"grey 0, light +, dark -", fontsize=9, y=1 - 0.08 / height, va="top")
    return _save(fig, path)


def _with_bad(name):
    """A copy of colour map ``name`` that paints masked (gap) pixels white."""
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="white")


def _mosaic(grid, cols):
    """Equal-shaped 2-D tiles (a list of rows) in one array, NaN between them; returns (array, gap)."""
    h, w = grid[0][0].shape
    gap = max(1, min(h, w) // 6)
    out = np.full((len(grid) * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for r, row in enumerate(grid):
        for col, tile in enumerate(row):
            out[r * (h + gap): r * (h + gap) + h, col * (w + gap): col * (w + gap) + w] = tile
    return out, gap


# --------------------------------------------------------------------------- feature maps


def _stages(model, image):
    """``[("input", image), (repr(layer), output), ...]`` for the layers whose output is (C, H, W).

    The model runs in evaluation mode on a batch of one; its mode is restored afterwards.
    """
    layers = getattr(model, "layers", None)
    if layers is None:
        raise TypeError(f"plot_feature_maps: expected a Sequential, got {type(model).__name__}")
    x = np.asarray(image)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"plot_feature_maps: image must be numeric, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"plot_feature_maps: expected one image shaped (C, H, W), (1, C, H, W) or (H, W), "
                         f"got shape {np.shape(image)}")
    try:
        model.output_shapes(x.shape)
    except ValueError as exc:
        raise ValueError(f"plot_feature_maps: {exc}") from None
    x = np.ascontiguousarray(x[None], dtype=model.dtype)  # a batch of 1

    stages = [("input", x[0])]
    was_training = model.training
    model.eval()
    try:
        for layer in layers:
            x = layer.forward(x)
            if x.ndim == 4:
                stages.append((repr(layer), x[0]))
    finally:
        model.train(was_training)
    return stages


def plot_feature_maps(model, image, path, max_channels=MAX_CHANNELS):
    """One image's activations after every stage of a Sequential that keeps an image shape.

    The first row is the input; then one row per layer whose output is still
    ``(channels, height, width)`` (convolutions, activations, pooling, ...),
    showing up to ``max_channels`` channel maps, titled with the layer's repr
    and output shape.  Maps with negative values use a diverging scale
    symmetric about 0 (red +, blue -), others a sequential scale from 0; one
    scale per row.  The model runs in evaluation mode (its mode is restored
    afterwards) on a batch of one.

    Parameters
    ----------
    model : Sequential
    image : ndarray, (C, H, W), (1, C, H, W) or (H, W)
        One image, already normalised as the model expects.
    path : str or os.PathLike
        Where to write the PNG.
    max_channels : int, default 16

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If ``image`` is not one image or the model cannot take it.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import fastcnn
    >>> from fastcnn.data import load_sample, to_float
    >>> from fastcnn.plot import plot_feature_maps
    >>> _, (x_test, _) = load_sample()
    >>> plot_feature_maps(fastcnn.models.lenet5(), to_float(x_test[0]), "maps.png")  # doctest: +SKIP
    'maps.png'
    """
    stages = _stages(model, image)
    cols = min(max_channels, max(s.shape[0] for _, s in stages))
    width, row_height = max(6.0, 0.9 * cols + 0.4), 1.25
    height = row_height * len(stages) + 0.5
    fig = _figure((width, height), layout=None)
    fig.suptitle("feature maps of one image, layer by layer (one colour scale per row: "
                 "red +, blue -, white 0 where negative values occur; dark 0 to yellow max otherwise)",
                 fontsize=9, y=1 - 0.1 / height, va="top")
    axes = fig.subplots(len(stages), 1, squeeze=False, gridspec_kw=dict(
        left=0.2 / width, right=1 - 0.2 / width, bottom=0.1 / height, top=1 - 0.7 / height, hspace=0.35))
    for ax, (name, maps) in zip(axes[:, 0], stages):
        maps = np.asarray(maps, dtype=np.float64)
        lo, hi = float(maps.min()), float(maps.max())
        if name == "input":
            style = dict(cmap=_with_bad("gray"), vmin=lo, vmax=hi if hi > lo else lo + 1)
        elif lo < 0:
            m = max(-lo, hi) or 1.0
            style = dict(cmap=_with_bad("RdBu_r"), vmin=-m, vmax=m)
        else:
            style = dict(cmap=_with_bad("viridis"), vmin=0.0, vmax=hi or 1.0)
        shown = min(len(maps), cols)
        # pad to ``cols`` tiles so that every row's tiles have the same width on the page
        mosaic, _ = _mosaic([list(maps[:shown])], cols)
        more = f", first {shown} of {len(maps)} channels" if shown < len(maps) else ""
        ax.imshow(np.ma.masked_invalid(mosaic), interpolation="nearest", aspect="equal", **style)
        ax.set_anchor("W")
        ax.set_title(f"{name}  ->  {'x'.join(map(str, maps.shape))}{more}", fontsize=9, loc="left", pad=3)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    return _save(fig, path)
