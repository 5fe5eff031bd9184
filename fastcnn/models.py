"""Ready-made networks: LeNet-5, a configurable plain ConvNet, a small VGG, a small ResNet and a small MobileNet.

Each builder returns a :class:`fastcnn.Sequential` with ``input_shape`` set and
its parameters in the order of the PyTorch model of the same layers, so
weights can be copied across one to one.

The registry: :data:`MODELS` maps a name to its builder, :func:`names` lists
the names, :func:`get_model` builds one by name with the builder's own
arguments, and :func:`build` builds one by name for images of a given size and
number of classes, the same arguments for every model (what the command line
uses).
"""

import numbers

from ._util import check_int
from .layers import BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, ReLU, Residual
from .model import Sequential

__all__ = ["lenet5", "convnet", "vgg_small", "resnet_small", "mobilenet_small", "get_model", "build", "names", "MODELS"]


def lenet5(num_classes=10, in_channels=1):
    """LeNet-5 for 28x28 images, with ReLU and max pooling.

    conv 1->6 5x5 pad 2, ReLU, max-pool 2, conv 6->16 5x5, ReLU, max-pool 2,
    flatten, linear 400->120, ReLU, 120->84, ReLU, 84->num_classes; parameters
    in the order of PyTorch's ``nn.Sequential`` of the same layers (61,706 for
    10 classes).

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.lenet5()
    >>> model.input_shape
    (1, 28, 28)
    """
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=2),
        ReLU(),
        MaxPool2d(2),
        Conv2d(6, 16, 5),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(16 * 5 * 5, 120),
        ReLU(),
        Linear(120, 84),
        ReLU(),
        Linear(84, num_classes),
        input_shape=(in_channels, 28, 28),
    )


# --------------------------------------------------------------------------- argument checks


def _in_shape(value, owner, name="in_shape"):
    if (not isinstance(value, (tuple, list)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in value)):
        raise ValueError(f"{owner}: {name} must be (channels, height, width) of positive ints, got {value!r}")
    return tuple(int(v) for v in value)


def _widths(channels, stages, owner):
    """Per-stage widths from ``channels`` (int or sequence) and ``stages`` (int or None)."""
    if stages is not None:
        stages = check_int(stages, "stages", owner, minimum=1)
    if isinstance(channels, numbers.Integral) and not isinstance(channels, bool):
        first = check_int(channels, "channels", owner, minimum=1)
        return tuple(first * 2 ** i for i in range(1 if stages is None else stages))
    if not isinstance(channels, (tuple, list)) or not channels:
        raise ValueError(f"{owner}: channels must be an int or a non-empty sequence of ints, got {channels!r}")
    widths = tuple(check_int(c, "channels[]", owner, minimum=1) for c in channels)
    if stages is not None and stages != len(widths):
        raise ValueError(f"{owner}: stages={stages} but channels gives {len(widths)} widths {widths}; pass "
                         "one width per stage, a single int (doubled every stage) or stages=None")
    return widths


def _check_pools(in_shape, pools, owner, name):
    """ValueError unless an image of ``in_shape`` survives ``pools`` 2x2 max pools (floor rounding)."""
    _, h, w = in_shape
    need = 2 ** pools
    if min(h, w) < need:
        raise ValueError(
            f"{owner}: {name} {in_shape} is too small for {pools} stage(s): every stage ends in a 2x2 max pool, "
            f"so height and width must be at least 2**{pools} = {need}; use larger images or fewer stages"
        )
    for _ in range(pools):
        h, w = h // 2, w // 2
    return h, w


# --------------------------------------------------------------------------- plain ConvNet / VGG


def _checked_convnet_args(in_shape, num_classes, channels, convs_per_stage, stages, fc_layers, fc_units, kernel_size,
                          batch_norm, dropout):
    """:func:`convnet`'s arguments, checked; returns the normalised values that the builder uses."""
    owner = "convnet"
    in_shape = _in_shape(in_shape, owner)
    num_classes = check_int(num_classes, "num_classes", owner, minimum=1)
    widths = _widths(channels, stages, owner)
    convs_per_stage = check_int(convs_per_stage, "convs_per_stage", owner, minimum=1)
    fc_layers = check_int(fc_layers, "fc_layers", owner, minimum=0)
    fc_units = check_int(fc_units, "fc_units", owner, minimum=1)
    kernel_size = check_int(kernel_size, "kernel_size", owner, minimum=1)
    if kernel_size % 2 == 0:
        raise ValueError(f"{owner}: kernel_size must be odd (padding kernel_size // 2 keeps the image size), "
                         f"got {kernel_size}")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"{owner}: batch_norm must be True or False, got {batch_norm!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{owner}: dropout must be a probability in [0, 1), got {dropout!r}")
    return in_shape, num_classes, widths, convs_per_stage, fc_layers, fc_units, kernel_size


def convnet(in_shape, num_classes, channels=(32, 64), convs_per_stage=2, stages=None, fc_layers=1, fc_units=128,
            kernel_size=3, batch_norm=False, dropout=0.0, algorithm="auto"):
    """A plain ConvNet: ``INPUT -> [[CONV -> (BN) -> RELU] x N -> POOL] x M -> [FC -> RELU (-> DROPOUT)] x K -> FC``.

    Every CONV is ``kernel_size x kernel_size`` with stride 1 and padding
    ``kernel_size // 2`` (so it keeps the image size; 3x3 with padding 1 by
    default); every POOL is a 2x2 max pool with stride 2, which halves height
    and width (rounding down).  With ``batch_norm`` the convolutions have no
    bias (the BatchNorm shift replaces it), as in PyTorch's VGG-BN.

    Parameters
    ----------
    in_shape : (int, int, int)
        Per-example input shape ``(channels, height, width)``; becomes the
        model's ``input_shape``.
    num_classes : int
        Outputs of the last FC layer (logits).
    channels : int or sequence of int
        Each stage's width (number of filters).  A sequence gives one width per
        stage; an int is the first stage's width, doubled every following stage.
    convs_per_stage : int >= 1
        N, the convolutions per stage.
    stages : int or None
        M, the number of stages; None means ``len(channels)`` (1 for an int).
    fc_layers : int >= 0
        K, hidden fully connected layers before the output layer.
    fc_units : int
        Width of every hidden FC layer.
    kernel_size : odd int
    batch_norm : bool
        BatchNorm2d after every convolution.
    dropout : float in [0, 1)
        Dropout probability after every hidden FC layer's ReLU (0: none).
    algorithm : str
        Every convolution's ``Conv2d(algorithm=...)``: "auto" or a name of ``fastcnn.kernels.CONV_ALGORITHMS``.
        Passed to every :class:`~fastcnn.layers.Conv2d`.

    Returns
    -------
    Sequential

    Raises
    ------
    ValueError
        For a bad argument, naming it; in particular when ``in_shape`` is too
        small for the ``M`` pools (height and width must be at least ``2**M``).

    Notes
    -----
    Parameter count, with ``c_0 = in_channels``, widths ``c_1 .. c_M``,
    ``k = kernel_size`` and a final feature map ``c_M x h x w``
    (``h = H // 2**M``)::

        conv:  sum over stages s, conv j:  c_in * c_s * k*k  (+ c_s bias, or + 2*c_s for BN)
        fc:    (c_M*h*w) * U + U  +  (K-1) * (U*U + U)  +  U * classes + classes     (K >= 1)
               (c_M*h*w) * classes + classes                                         (K == 0)

    The defaults on 3x32x32 images with 10 classes (3->32->32, pool, 32->64->64,
    pool, 4096->128->10) have 591,274 parameters (65,568 conv, 525,706 FC).

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.convnet((3, 32, 32), 10)
    >>> sum(p.size for p in model.parameters())
    591274
    >>> model.output_shapes((3, 32, 32))[-1]
    (10,)
    """
    in_shape, num_classes, widths, convs_per_stage, fc_layers, fc_units, kernel_size = _checked_convnet_args(
        in_shape, num_classes, channels, convs_per_stage, stages, fc_layers, fc_units, kernel_size, batch_norm,
        dropout)
    h, w = _check_pools(in_shape, len(widths), "convnet", "in_shape")

    layers = []
    c_in = in_shape[0]
    for width in widths:
        for _ in range(convs_per_stage):
            layers.append(Conv2d(c_in, width, kernel_size, padding=kernel_size // 2, bias=not batch_norm,
                                 algorithm=algorithm))
            if batch_norm:
                layers.append(BatchNorm2d(width))
            layers.append(ReLU())
            c_in = width
        layers.append(MaxPool2d(2))
    layers.append(Flatten())
    features = c_in * h * w
    for _ in range(fc_layers):
        layers += [Linear(features, fc_units), ReLU()]
        if dropout > 0:
            layers.append(Dropout(dropout))
        features = fc_units
    layers.append(Linear(features, num_classes))
    return Sequential(*layers, input_shape=in_shape)


def vgg_small(num_classes=10, in_channels=3, batch_norm=True, widths=(32, 64, 128), fc_units=256, image_size=32,
              algorithm="auto"):
    """A small VGG for CIFAR-sized images, with a flatten head.

    For the defaults (3x32x32 inputs)::

        [conv3x3 3->32,   BN, ReLU, conv3x3 32->32,   BN, ReLU, max-pool 2]   32x16x16
        [conv3x3 32->64,  BN, ReLU, conv3x3 64->64,   BN, ReLU, max-pool 2]   64x8x8
        [conv3x3 64->128, BN, ReLU, conv3x3 128->128, BN, ReLU, max-pool 2]   128x4x4
        flatten 2048 -> linear 256, ReLU -> linear num_classes

    that is ``convnet((in_channels, image_size, image_size), num_classes,
    channels=widths, convs_per_stage=2, fc_layers=1, fc_units=fc_units,
    batch_norm=batch_norm)``.  The head flattens the last feature map (it keeps
    where things are, unlike a global-average-pool head, and for 32x32 inputs
    costs 0.5 M of the parameters).  With ``batch_norm`` the convolutions have
    no bias.

    Parameter count for 10 classes: 814,570 with batch norm (286,560 conv
    weights + 896 BN weights and biases + 527,114 FC), 814,122 without
    (conv biases, 448, instead of BN).

    Parameters
    ----------
    num_classes : int
    in_channels : int
    batch_norm : bool
    widths : sequence of 3 ints (or any number of stages)
        Stage widths; smaller ones make a faster model for tests.
    fc_units : int
        Width of the hidden FC layer.
    image_size : int
        Height and width of the inputs (the flatten head depends on it);
        at least ``2**len(widths)``.
    algorithm : str
        Every convolution's ``Conv2d(algorithm=...)``: "auto" or a name of ``fastcnn.kernels.CONV_ALGORITHMS``.
        Passed to every Conv2d.

    Returns
    -------
    Sequential

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.vgg_small()
    >>> model.input_shape, sum(p.size for p in model.parameters())
    ((3, 32, 32), 814570)
    """
    owner = "vgg_small"
    image_size = check_int(image_size, "image_size", owner, minimum=1)
    widths = _widths(tuple(widths) if isinstance(widths, list) else widths, None, owner)
    need = 2 ** len(widths)
    if image_size < need:
        raise ValueError(f"{owner}: image_size {image_size} is too small for {len(widths)} stages: every stage "
                         f"ends in a 2x2 max pool, so it must be at least 2**{len(widths)} = {need}")
    return convnet((in_channels, image_size, image_size), num_classes, channels=tuple(widths), convs_per_stage=2,
                   fc_layers=1, fc_units=fc_units, batch_norm=batch_norm, algorithm=algorithm)


# --------------------------------------------------------------------------- ResNet


def _basic_block(c_in, c_out, stride, algorithm):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN plus shortcut (identity, or 1x1 conv(stride)-BN when the shape changes)."""
    block = [
        Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, algorithm=algorithm),
        BatchNorm2d(c_out),
        ReLU(),
        Conv2d(c_out, c_out, 3, padding=1, bias=False, algorithm=algorithm),
        BatchNorm2d(c_out),
    ]
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = [Conv2d(c_in, c_out, 1, stride=stride, bias=False, algorithm=algorithm), BatchNorm2d(c_out)]
    return Residual(block, shortcut=shortcut)


def resnet_small(num_classes=10, in_channels=3, widths=(16, 32, 64), blocks_per_stage=2, image_size=32,
                 algorithm="auto"):
    """A small ResNet for CIFAR-sized images (He et al. 2016, the CIFAR variant; ResNet-14 by default).

    For the defaults (3x32x32 inputs)::

        stem:    conv3x3 3->16, BN, ReLU                                   16x32x32
        stage 1: 2 x basic block 16->16, identity shortcut                 16x32x32
        stage 2: basic block 16->32 stride 2, 1x1-conv+BN shortcut,
                 basic block 32->32                                        32x16x16
        stage 3: basic block 32->64 stride 2, 1x1-conv+BN shortcut,
                 basic block 64->64                                        64x8x8
        head:    global average pool -> linear 64 -> num_classes

    A basic block is ``Residual([conv3x3(stride), BN, ReLU, conv3x3, BN],
    shortcut)`` followed by ``ReLU()``; the shortcut is the identity, or
    ``[Conv2d(c_in, c_out, 1, stride=2, bias=False), BatchNorm2d(c_out)]`` for
    the first block of stages 2 and later.  Convolutions have no bias (BN
    follows each).  The global-average-pool head makes the model work for any
    image size of at least ``2**(len(widths) - 1)``; ``image_size`` only sets
    ``input_shape``.

    Parameter count for 10 classes: 175,258 (stem 464; stage 1 9,344; stage 2
    33,088, of which 576 in the shortcut; stage 3 131,712, of which 2,176 in
    the shortcut; head 650).

    Parameters
    ----------
    num_classes : int
    in_channels : int
    widths : sequence of int
        Width of each stage (the stem has ``widths[0]``); a stage after the
        first halves the image size.
    blocks_per_stage : int >= 1
    image_size : int
        Height and width recorded as ``input_shape``.
    algorithm : str
        Every convolution's ``Conv2d(algorithm=...)``: "auto" or a name of ``fastcnn.kernels.CONV_ALGORITHMS``.
        Passed to every Conv2d.

    Returns
    -------
    Sequential

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.resnet_small()
    >>> sum(p.size for p in model.parameters())
    175258
    """
    owner = "resnet_small"
    num_classes = check_int(num_classes, "num_classes", owner, minimum=1)
    in_channels = check_int(in_channels, "in_channels", owner, minimum=1)
    widths = _widths(tuple(widths) if isinstance(widths, list) else widths, None, owner)
    blocks_per_stage = check_int(blocks_per_stage, "blocks_per_stage", owner, minimum=1)
    image_size = check_int(image_size, "image_size", owner, minimum=1)
    need = 2 ** (len(widths) - 1)
    if image_size < need:
        raise ValueError(f"{owner}: image_size {image_size} is too small for {len(widths)} stages: every stage "
                         f"after the first halves the image, so it must be at least 2**{len(widths) - 1} = {need}")
    layers = [Conv2d(in_channels, widths[0], 3, padding=1, bias=False, algorithm=algorithm),
              BatchNorm2d(widths[0]), ReLU()]
    c_in = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if s > 0 and b == 0 else 1
            layers += [_basic_block(c_in, width, stride, algorithm), ReLU()]
            c_in = width
    layers += [GlobalAvgPool2d(), Linear(c_in, num_classes)]
    return Sequential(*layers, input_shape=(in_channels, image_size, image_size))


# --------------------------------------------------------------------------- MobileNet


def _separable(c_in, c_out, stride, algorithm):
    """Depthwise 3x3 conv (``groups = c_in``, stride), BN, ReLU, then pointwise 1x1 conv c_in -> c_out, BN, ReLU."""
    return [
        Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False, algorithm=algorithm),
        BatchNorm2d(c_in),
        ReLU(),
        Conv2d(c_in, c_out, 1, bias=False, algorithm=algorithm),
        BatchNorm2d(c_out),
        ReLU(),
    ]


def _blocks(blocks, owner):
    if (not isinstance(blocks, (tuple, list)) or not blocks
            or any(not isinstance(b, (tuple, list)) or len(b) != 2 for b in blocks)):
        raise ValueError(f"{owner}: blocks must be a non-empty sequence of (channels, stride) pairs, got {blocks!r}")
    return [(check_int(c, "blocks channels", owner, minimum=1), check_int(s, "blocks stride", owner, minimum=1))
            for c, s in blocks]


def mobilenet_small(num_classes=10, in_channels=3, width=32, blocks=((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)),
                    image_size=32, algorithm="auto"):
    """A small MobileNet (Howard et al. 2017: depthwise-separable blocks) for CIFAR-sized images.

    For the defaults (3x32x32 inputs)::

        stem:  conv3x3 3->32, BN, ReLU                                     32x32x32
        5 depthwise-separable blocks (channels, stride):
               (64, 1) 64x32x32, (128, 2) 128x16x16, (128, 1),
               (256, 2) 256x8x8, (256, 1)
        head:  global average pool -> linear 256 -> num_classes

    A block is a depthwise 3x3 convolution (``groups`` = its channels, the
    block's stride, padding 1), BN, ReLU, then a pointwise 1x1 convolution to
    the block's channels, BN, ReLU.  Convolutions have no bias (BN follows
    each).  The global-average-pool head takes any image size that survives
    the strides; ``image_size`` only sets ``input_shape``.

    Parameter count for 10 classes: 136,778 (stem 928; blocks 2,528, 9,152,
    18,048, 34,688 and 68,864; head 2,570).

    Parameters
    ----------
    num_classes : int
    in_channels : int
    width : int
        Channels of the stem.
    blocks : sequence of (channels, stride)
        The depthwise-separable blocks in order.
    image_size : int
        Height and width recorded as ``input_shape``.
    algorithm : str
        Every convolution's ``Conv2d(algorithm=...)``.

    Returns
    -------
    Sequential

    Examples
    --------
    >>> import fastcnn
    >>> model = fastcnn.models.mobilenet_small()
    >>> model.output_shapes((3, 32, 32))[-1]
    (10,)
    """
    owner = "mobilenet_small"
    num_classes = check_int(num_classes, "num_classes", owner, minimum=1)
    in_channels = check_int(in_channels, "in_channels", owner, minimum=1)
    width = check_int(width, "width", owner, minimum=1)
    blocks = _blocks(blocks, owner)
    image_size = check_int(image_size, "image_size", owner, minimum=1)
    layers = [Conv2d(in_channels, width, 3, padding=1, bias=False, algorithm=algorithm), BatchNorm2d(width), ReLU()]
    c = width
    for c_out, stride in blocks:
        layers += _separable(c, c_out, stride, algorithm)
        c = c_out
    layers += [GlobalAvgPool2d(), Linear(c, num_classes)]
    return Sequential(*layers, input_shape=(in_channels, image_size, image_size))


# --------------------------------------------------------------------------- registry

#: Model name -> builder, for selecting a model by name (the command line's ``--model``).
MODELS = {
    "lenet5": lenet5,
    "convnet": convnet,
    "vgg_small": vgg_small,
    "resnet_small": resnet_small,
    "mobilenet_small": mobilenet_small,
}


def get_model(name, **kwargs):
    """Build the model called ``name`` in :data:`MODELS` with keyword arguments ``kwargs``.

    Parameters
    ----------
    name : str
        One of ``"lenet5"``, ``"convnet"``, ``"vgg_small"``, ``"resnet_small"``, ``"mobilenet_small"``
        (a dash works too: ``"vgg-small"``).
    **kwargs
        The builder's arguments (``convnet`` needs ``in_shape`` and ``num_classes``).

    Returns
    -------
    Sequential

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    TypeError
        For an argument the builder does not take.

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.models.get_model("resnet_small", num_classes=4).output_shapes((3, 32, 32))[-1]
    (4,)
    """
    return MODELS[_key(name, "get_model")](**kwargs)


def _key(name, owner):
    key = name.replace("-", "_").lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise ValueError(f"{owner}: unknown model {name!r}; choose one of {sorted(MODELS)}")
    return key


def names():
    """The registered model names, in registry order.

    Examples
    --------
    >>> import fastcnn
    >>> fastcnn.models.names()
    ('lenet5', 'convnet', 'vgg_small', 'resnet_small', 'mobilenet_small')
    """
    return tuple(MODELS)


def _lenet5_args(num_classes, in_channels, image_size):
    if image_size != 28:
        raise ValueError(f"build: lenet5 is built for 28x28 images (its first linear layer has 16*5*5 inputs), "
                         f"got image_size={image_size!r}; use convnet, vgg_small or resnet_small for other sizes")
    return {"num_classes": num_classes, "in_channels": in_channels}


def _convnet_args(num_classes, in_channels, image_size):
    return {"in_shape": (in_channels, image_size, image_size), "num_classes": num_classes}


def _sized_args(num_classes, in_channels, image_size):
    return {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}


#: How :func:`build`'s common arguments map onto each builder's own (the rest take them as they are).
_BUILD_ARGS = {"lenet5": _lenet5_args, "convnet": _convnet_args}


def build(name, num_classes=10, in_channels=1, image_size=28, **kwargs):
    """Build the model called ``name`` for ``in_channels x image_size x image_size`` images and ``num_classes`` classes.

    The same arguments for every model in :data:`MODELS` (the defaults are
    MNIST's: 1x28x28, 10 classes), mapped onto each builder's own:
    ``lenet5(num_classes, in_channels)`` (28x28 only),
    ``convnet((in_channels, image_size, image_size), num_classes)``, and
    ``vgg_small`` / ``resnet_small(num_classes=..., in_channels=...,
    image_size=...)``.  Each builder's other arguments pass through
    ``kwargs``.

    Parameters
    ----------
    name : str
        A name of :func:`names` (a dash works too: ``"vgg-small"``).
    num_classes, in_channels, image_size : int
    **kwargs
        Further arguments of the builder (``batch_norm=False``, ``widths=(8, 16)`` ...).

    Returns
    -------
    Sequential
        With ``input_shape == (in_channels, image_size, image_size)``.

    Raises
    ------
    ValueError
        For an unknown name, or an image size the model cannot take.

    Examples
    --------
    >>> import fastcnn
    >>> [fastcnn.models.build(name).input_shape for name in fastcnn.models.names()]
    [(1, 28, 28), (1, 28, 28), (1, 28, 28), (1, 28, 28), (1, 28, 28)]
    """
    key = _key(name, "build")
    args = _BUILD_ARGS.get(key, _sized_args)(num_classes, in_channels, image_size)
    return MODELS[key](**args, **kwargs)
