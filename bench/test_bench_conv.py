"""Convolution suite: forward and forward+backward, fastcnn direct / im2col and PyTorch.

Grouped per shape and pass, so each group of the report compares the three.
FLOPs per pass: 2*N*K*C*R*S*P*Q (forward+backward: 3 passes).
"""

import pytest
from conftest import conv_arrays, record_gflops, run

from fastcnn.bench import FASTCNN_ALGORITHMS
from fastcnn.kernels import conv2d_backward, conv2d_forward


@pytest.mark.parametrize("algorithm", sorted(FASTCNN_ALGORITHMS))
def test_conv_forward(benchmark, conv_shape, algorithm):
    s = conv_shape
    x, w, b, _ = conv_arrays(s)
    run(benchmark, lambda: conv2d_forward(x, w, b, s.stride, s.pad, algorithm=algorithm), f"conv fwd {s}")
    record_gflops(benchmark, s.flops)


@pytest.mark.parametrize("algorithm", sorted(FASTCNN_ALGORITHMS))
def test_conv_forward_backward(benchmark, conv_shape, algorithm):
    s = conv_shape
    x, w, b, dy = conv_arrays(s)

    def step():
        conv2d_forward(x, w, b, s.stride, s.pad, algorithm=algorithm)
        return conv2d_backward(dy, x, w, s.stride, s.pad, algorithm=algorithm)  # dx, dw, db

    run(benchmark, step, f"conv fwd+bwd {s}")
    record_gflops(benchmark, 3 * s.flops)


def _torch_tensors(s):
    torch = pytest.importorskip("torch")
    x, w, b, dy = (torch.from_numpy(a) for a in conv_arrays(s))
    return torch, x, w, b, dy


def test_conv_forward_torch(benchmark, conv_shape):
    s = conv_shape
    torch, x, w, b, _ = _torch_tensors(s)
    F = torch.nn.functional

    def forward():
        with torch.no_grad():
            return F.conv2d(x, w, b, s.stride, s.pad)

    run(benchmark, forward, f"conv fwd {s}")
    record_gflops(benchmark, s.flops)


def test_conv_forward_backward_torch(benchmark, conv_shape):
    s = conv_shape
    torch, x, w, b, dy = _torch_tensors(s)
    F = torch.nn.functional
    x, w, b = (t.requires_grad_(True) for t in (x, w, b))

    def step():
        y = F.conv2d(x, w, b, s.stride, s.pad)
        return torch.autograd.grad(y, (x, w, b), dy)

    run(benchmark, step, f"conv fwd+bwd {s}")
    record_gflops(benchmark, 3 * s.flops)
