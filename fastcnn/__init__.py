"""fastcnn: train small convolutional neural networks fast on multicore CPUs."""

from .config import get_num_threads, set_num_threads

__version__ = "0.1.0"
