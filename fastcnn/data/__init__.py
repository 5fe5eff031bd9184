"""The input pipeline: data set loaders, splits, normalisation and mini-batches.

Only numpy and the standard library are used to read data; every name below
is importable as ``fastcnn.data.NAME``.

=================  ===========================================================================
module             names
=================  ===========================================================================
``idx``            :func:`read_idx`: the IDX format of MNIST-style files (optionally gzip)
``mnist``          :func:`load_mnist`, :func:`load_fashion_mnist`, :data:`FASHION_MNIST_CLASSES`,
                   :func:`load_sample` (the MNIST subset packaged in ``fastcnn/sample_data/``)
``download``       :func:`download_mnist`, :data:`MNIST_SHA256`, :data:`FASHION_MNIST_SHA256`
``npz``            :func:`load_npz`: images and labels from a ``.npz`` archive
``cifar``          :func:`load_cifar10`, :data:`CIFAR10_CLASSES`
``splits``         :func:`split_indices`, :func:`train_val_split`, :func:`train_val_test_split`
``normalize``      :func:`to_float`, :class:`Normalizer` (statistics of the training data only)
``batches``        :func:`iterate_minibatches`
``files``          hostile-file safety shared with the checkpoint reader: regular files only,
                   bounded gzip, ``.npy``/``.npz``/JSON readers that check every declared size
=================  ===========================================================================

Loaders return uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``;
:func:`to_float` or a :class:`Normalizer` turns the images into float32.
Augmentation lives in :mod:`fastcnn.augment`.
"""

from .batches import iterate_minibatches
from .cifar import CIFAR10_CLASSES, load_cifar10
from .download import FASHION_MNIST_SHA256, MNIST_SHA256, download_mnist
from .idx import read_idx
from .mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist, load_sample
from .normalize import Normalizer, to_float
from .npz import load_npz
from .splits import split_indices, train_val_split, train_val_test_split

__all__ = [
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_sample",
    "load_npz",
    "download_mnist",
    "MNIST_SHA256",
    "FASHION_MNIST_SHA256",
    "to_float",
    "split_indices",
    "train_val_split",
    "train_val_test_split",
    "Normalizer",
    "iterate_minibatches",
    "FASHION_MNIST_CLASSES",
    "load_cifar10",
    "CIFAR10_CLASSES",
]
