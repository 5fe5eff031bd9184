"""PyTorch twins of fastcnn's models: the reference the benchmarks (and the PyTorch tests) compare against.

Each twin has the same layers as the fastcnn model of the same name, with
the parameters in the same order and of the same shapes, so weights can be
copied one to one (``zip(model.parameters(), twin.parameters())``).  PyTorch
is never a dependency of fastcnn: every function takes the ``torch`` module
as its first argument, and :func:`import_torch` returns None when it is not
installed.

Examples
--------
>>> from fastcnn.bench.torch_models import import_torch, torch_lenet5
>>> torch = import_torch()
>>> if torch is not None:
...     net = torch_lenet5(torch)
"""

__all__ = ["import_torch", "torch_lenet5", "torch_vgg_small", "torch_resnet_small", "torch_mobilenet_small",
           "TORCH_TWINS"]


def import_torch():
    """The ``torch`` module, or None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_lenet5(torch):
    """PyTorch twin of :func:`fastcnn.models.lenet5` (1x28x28 input, 10 classes).

    Parameters
    ----------
    torch : module
        PyTorch.

    Returns
    -------
    torch.nn.Sequential
        conv 6@5x5 pad 2, ReLU, max pool 2; conv 16@5x5, ReLU, max pool 2;
        flatten; Linear 400->120, ReLU, 120->84, ReLU, 84->10.
    """
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def torch_vgg_small(torch, num_classes=10, in_channels=3, widths=(32, 64, 128), fc_units=256, image_size=32):
    """PyTorch twin of :func:`fastcnn.models.vgg_small` (batch norm, bias-free convs, flatten head).

    Parameters
    ----------
    torch : module
        PyTorch.
    num_classes, in_channels, widths, fc_units, image_size
        As in :func:`fastcnn.models.vgg_small`.

    Returns
    -------
    torch.nn.Sequential
        Per width: two (3x3 conv, BatchNorm2d, ReLU), then max pool 2; then
        flatten, Linear to ``fc_units``, ReLU, Linear to ``num_classes``.
    """
    nn = torch.nn
    layers, c, size = [], in_channels, image_size
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            c = width
        layers.append(nn.MaxPool2d(2))
        size //= 2
    layers += [nn.Flatten(), nn.Linear(c * size * size, fc_units), nn.ReLU(), nn.Linear(fc_units, num_classes)]
    return nn.Sequential(*layers)


def _basic_block(torch):
    """The ResNet basic block class of :func:`torch_resnet_small`."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Sequential()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                              nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    return BasicBlock


def torch_resnet_small(torch, num_classes=10, in_channels=3, widths=(16, 32, 64), blocks_per_stage=2):
    """PyTorch twin of :func:`fastcnn.models.resnet_small` (same layers, same parameter order).

    Parameters
    ----------
    torch : module
        PyTorch.
    num_classes, in_channels, widths, blocks_per_stage
        As in :func:`fastcnn.models.resnet_small`.

    Returns
    -------
    torch.nn.Sequential
        Stem (3x3 conv, BatchNorm2d, ReLU); per stage ``blocks_per_stage``
        basic blocks (the first of every stage after the first has stride 2
        and a 1x1 conv + BatchNorm2d shortcut); global average pool, flatten,
        Linear to ``num_classes``.
    """
    nn = torch.nn
    block = _basic_block(torch)
    layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks_per_stage):
            layers.append(block(c, width, 2 if s > 0 and b == 0 else 1))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def torch_mobilenet_small(torch, num_classes=10, in_channels=3, width=32,
                          blocks=((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))):
    """PyTorch twin of :func:`fastcnn.models.mobilenet_small` (same layers, same parameter order).

    Parameters
    ----------
    torch : module
        PyTorch.
    num_classes, in_channels, width, blocks
        As in :func:`fastcnn.models.mobilenet_small`.

    Returns
    -------
    torch.nn.Sequential
        Stem (3x3 conv, BatchNorm2d, ReLU); per block a depthwise 3x3 conv
        (``groups`` = its channels), BatchNorm2d, ReLU, a 1x1 conv,
        BatchNorm2d, ReLU; global average pool, flatten, Linear.
    """
    nn = torch.nn
    layers = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    c = width
    for c_out, stride in blocks:
        layers += [nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                   nn.Conv2d(c, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


#: fastcnn model name -> its PyTorch twin (called as ``TORCH_TWINS[name](torch)``).
TORCH_TWINS = {"lenet5": torch_lenet5, "vgg_small": torch_vgg_small, "resnet_small": torch_resnet_small,
               "mobilenet_small": torch_mobilenet_small}
