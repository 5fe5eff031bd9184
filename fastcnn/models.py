"""Ready-made networks."""

from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from .model import Sequential


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
