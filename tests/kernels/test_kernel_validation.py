"""Bad arguments raise ValueError or TypeError naming the argument, before any
Numba kernel sees them (never a numba TypingError or an IndexError)."""

import numpy as np
import pytest

from fastcnn import kernels as K

F64, F32 = np.float64, np.float32


def z(*shape, dtype=F64):
    return np.zeros(shape, dtype=dtype)


X = z(2, 3, 5, 5)           # a valid input
W = z(4, 3, 3, 3)           # a valid weight for X
B = z(4)
DY = z(2, 4, 3, 3)          # the output shape for X, W, stride 1, padding 0
XP = z(2, 3, 6, 6)          # pooling input
DYP = z(2, 3, 3, 3)         # 2x2 pool output for XP
LOGITS = z(3, 5)
LABELS = np.array([0, 4, 2])

CONV_FWD = {"direct": K.conv2d_forward, "im2col": K.conv2d_forward_im2col}
CONV_BWD = {"direct": K.conv2d_backward, "im2col": K.conv2d_backward_im2col}


# (exception, loose regex on the message, call)
CONV_FWD_CASES = {
    "x_ndim_3": (ValueError, r"\bx\b", lambda f: f(z(3, 5, 5), W, B)),
    "w_ndim_2": (ValueError, r"weight|\bw\b", lambda f: f(X, z(4, 27), B)),
    "channel_mismatch": (ValueError, r"channel", lambda f: f(X, z(4, 2, 3, 3), B)),
    "kernel_larger_than_input": (ValueError, r"kernel|weight",
                                 lambda f: f(z(1, 3, 2, 5), W, B)),
    "kernel_larger_than_padded_input": (ValueError, r"kernel|weight|padd",
                                        lambda f: f(z(1, 3, 4, 4), z(1, 3, 7, 7), None,
                                                    padding=1)),
    "stride_zero": (ValueError, r"stride", lambda f: f(X, W, B, stride=0)),
    "stride_negative": (ValueError, r"stride", lambda f: f(X, W, B, stride=-1)),
    "stride_pair_with_zero": (ValueError, r"stride", lambda f: f(X, W, B, stride=(1, 0))),
    "stride_float": (TypeError, r"stride", lambda f: f(X, W, B, stride=1.5)),
    "stride_triple": (TypeError, r"stride", lambda f: f(X, W, B, stride=(1, 1, 1))),
    "padding_negative": (ValueError, r"padding", lambda f: f(X, W, B, padding=-1)),
    "padding_pair_negative": (ValueError, r"padding", lambda f: f(X, W, B, padding=(0, -2))),
    "bias_wrong_length": (ValueError, r"bias|\bb\b", lambda f: f(X, W, z(3))),
    "bias_2d": (ValueError, r"bias|\bb\b", lambda f: f(X, W, z(4, 1))),
    "x_f32_w_f64": (TypeError, r"dtype|weight|\bw\b", lambda f: f(X.astype(F32), W, None)),
    "x_f64_w_f32": (TypeError, r"dtype|weight|\bw\b", lambda f: f(X, W.astype(F32), None)),
    "bias_dtype_mismatch": (TypeError, r"bias|\bb\b", lambda f: f(X, W, B.astype(F32))),
    "x_integer": (TypeError, r"\bx\b.*(float|dtype)",
                  lambda f: f(X.astype(np.int64), W, None)),
    "x_list": (TypeError, r"\bx\b", lambda f: f(X.tolist(), W, None)),
    # groups, dilation and the padding strings (tests/kernels/test_conv_groups.py has the full messages)
    "groups_not_dividing_channels": (ValueError, r"divisible by groups", lambda f: f(X, W, B, groups=2)),
    "groups_zero": (ValueError, r"groups", lambda f: f(X, W, B, groups=0)),
    "groups_float": (TypeError, r"groups", lambda f: f(X, W, B, groups=1.0)),
    "weight_for_other_groups": (ValueError, r"channel", lambda f: f(z(2, 4, 5, 5), z(4, 1, 3, 3), B, groups=2)),
    "dilation_zero": (ValueError, r"dilation", lambda f: f(X, W, B, dilation=0)),
    "dilation_pair_negative": (ValueError, r"dilation", lambda f: f(X, W, B, dilation=(1, -1))),
    "dilation_float": (TypeError, r"dilation", lambda f: f(X, W, B, dilation=2.0)),
    "dilated_kernel_larger_than_input": (ValueError, r"kernel.*dilation", lambda f: f(X, W, B, dilation=3)),
    "padding_same_with_stride": (ValueError, r"padding='same' needs stride 1",
                                 lambda f: f(X, W, B, stride=2, padding="same")),
    "padding_unknown_string": (ValueError, r"padding must be 'same', 'valid'", lambda f: f(X, W, B, padding="full")),
}


@pytest.mark.parametrize("case", list(CONV_FWD_CASES))
@pytest.mark.parametrize("impl", list(CONV_FWD))
def test_conv2d_forward_rejects(impl, case):
    exc, match, call = CONV_FWD_CASES[case]
    with pytest.raises(exc, match=match):
        call(CONV_FWD[impl])


CONV_BWD_CASES = {
    "dy_wrong_spatial_shape": (ValueError, r"\bdy\b", lambda f: f(z(2, 4, 4, 4), X, W)),
    "dy_wrong_channels": (ValueError, r"\bdy\b", lambda f: f(z(2, 5, 3, 3), X, W)),
    "dy_wrong_batch": (ValueError, r"\bdy\b", lambda f: f(z(1, 4, 3, 3), X, W)),
    "dy_ndim_3": (ValueError, r"\bdy\b", lambda f: f(z(4, 3, 3), X, W)),
    "dy_shape_for_other_stride": (ValueError, r"\bdy\b", lambda f: f(DY, X, W, stride=2)),
    "dy_dtype_mismatch": (TypeError, r"\bdy\b|dtype", lambda f: f(DY.astype(F32), X, W)),
    "channel_mismatch": (ValueError, r"channel", lambda f: f(DY, X, z(4, 2, 3, 3))),
    "stride_zero": (ValueError, r"stride", lambda f: f(DY, X, W, stride=0)),
    "padding_negative": (ValueError, r"padding", lambda f: f(DY, X, W, padding=-1)),
}


@pytest.mark.parametrize("case", list(CONV_BWD_CASES))
@pytest.mark.parametrize("impl", list(CONV_BWD))
def test_conv2d_backward_rejects(impl, case):
    exc, match, call = CONV_BWD_CASES[case]
    with pytest.raises(exc, match=match):
        call(CONV_BWD[impl])


IM2COL_CASES = {
    "im2col_kernel_size_zero": (ValueError, r"kernel_size", lambda: K.im2col(X, 0)),
    "im2col_kernel_too_big": (ValueError, r"kernel", lambda: K.im2col(X, 6)),
    "im2col_x_ndim": (ValueError, r"\bx\b", lambda: K.im2col(z(3, 5, 5), 3)),
    "im2col_stride_zero": (ValueError, r"stride", lambda: K.im2col(X, 3, stride=0)),
    "col2im_cols_wrong_shape": (ValueError, r"cols",
                                lambda: K.col2im(z(2, 27, 8), X.shape, 3)),
    "col2im_bad_x_shape": (ValueError, r"x_shape",
                           lambda: K.col2im(z(2, 27, 9), (2, 3, 5), 3)),
    "col2im_integer_cols": (TypeError, r"cols",
                            lambda: K.col2im(np.zeros((2, 27, 9), np.int32), X.shape, 3)),
}


@pytest.mark.parametrize("case", list(IM2COL_CASES))
def test_im2col_col2im_reject(case):
    exc, match, call = IM2COL_CASES[case]
    with pytest.raises(exc, match=match):
        call()


POOL_FWD = {"max": K.max_pool2d_forward, "avg": K.avg_pool2d_forward}

POOL_FWD_CASES = {
    "x_ndim_3": (ValueError, r"\bx\b", lambda f: f(z(3, 6, 6), 2)),
    "kernel_size_zero": (ValueError, r"kernel_size", lambda f: f(XP, 0)),
    "kernel_size_negative": (ValueError, r"kernel_size", lambda f: f(XP, -2)),
    "kernel_size_pair_with_zero": (ValueError, r"kernel_size", lambda f: f(XP, (2, 0))),
    "stride_zero": (ValueError, r"stride", lambda f: f(XP, 2, stride=0)),
    "padding_negative": (ValueError, r"padding", lambda f: f(XP, 2, padding=-1)),
    "padding_more_than_half_kernel": (ValueError, r"padding", lambda f: f(XP, 3, padding=2)),
    "padding_pair_more_than_half": (ValueError, r"padding",
                                    lambda f: f(XP, (4, 2), padding=(2, 2))),
    "kernel_larger_than_input": (ValueError, r"kernel", lambda f: f(XP, 7)),
    "x_integer": (TypeError, r"\bx\b.*(float|dtype)",
                  lambda f: f(XP.astype(np.int32), 2)),
    # windows entirely in the padding: the kernels read outside the array (or crashed) before the check
    "empty_plane_with_padding": (ValueError, r"planes are empty \(0x0\)", lambda f: f(z(1, 1, 0, 0), 2, padding=1)),
    "empty_rows_of_a_wide_plane": (ValueError, r"planes are empty \(0x100000\)",
                                   lambda f: f(z(1, 2, 0, 100000, dtype=F32), 2, padding=1)),
    "empty_columns": (ValueError, r"planes are empty \(3x0\)", lambda f: f(z(2, 1, 3, 0), (1, 2), padding=(0, 1))),
}


@pytest.mark.parametrize("case", list(POOL_FWD_CASES))
@pytest.mark.parametrize("kind", list(POOL_FWD))
def test_pool2d_forward_rejects(kind, case):
    exc, match, call = POOL_FWD_CASES[case]
    with pytest.raises(exc, match=match):
        call(POOL_FWD[kind])


AM = np.zeros(DYP.shape, dtype=np.int64)

POOL_BWD_CASES = {
    "max_dy_wrong_shape": (ValueError, r"\bdy\b|argmax",
                           lambda: K.max_pool2d_backward(z(2, 3, 2, 2), AM, XP.shape)),
    "max_argmax_wrong_shape": (ValueError, r"argmax",
                               lambda: K.max_pool2d_backward(DYP, AM[:, :, :2], XP.shape)),
    "max_argmax_float": (TypeError, r"argmax",
                         lambda: K.max_pool2d_backward(DYP, AM.astype(F64), XP.shape)),
    "max_argmax_out_of_range": (ValueError, r"argmax",
                                lambda: K.max_pool2d_backward(DYP, AM + 36, XP.shape)),
    "max_argmax_negative": (ValueError, r"argmax",
                            lambda: K.max_pool2d_backward(DYP, AM - 1, XP.shape)),
    "max_x_shape_batch_mismatch": (ValueError, r"x_shape|\bdy\b",
                                   lambda: K.max_pool2d_backward(DYP, AM, (1, 3, 6, 6))),
    "max_x_shape_3_dims": (ValueError, r"x_shape",
                           lambda: K.max_pool2d_backward(DYP, AM, (3, 6, 6))),
    "avg_dy_wrong_shape": (ValueError, r"\bdy\b",
                           lambda: K.avg_pool2d_backward(z(2, 3, 2, 2), XP.shape, 2)),
    "avg_dy_shape_of_floor_mode_in_ceil_mode": (
        ValueError, r"\bdy\b",
        lambda: K.avg_pool2d_backward(z(1, 1, 2, 2), (1, 1, 5, 5), 2, ceil_mode=True)),
    "avg_kernel_size_zero": (ValueError, r"kernel_size",
                             lambda: K.avg_pool2d_backward(DYP, XP.shape, 0)),
    "avg_padding_more_than_half": (ValueError, r"padding",
                                   lambda: K.avg_pool2d_backward(DYP, XP.shape, 2, padding=2)),
    "global_dy_wrong_shape": (ValueError, r"\bdy\b",
                              lambda: K.global_avg_pool2d_backward(z(2, 4), XP.shape)),
    "global_dy_4d": (ValueError, r"\bdy\b",
                     lambda: K.global_avg_pool2d_backward(z(2, 3, 1, 1), XP.shape)),
    "global_x_ndim": (ValueError, r"\bx\b",
                      lambda: K.global_avg_pool2d_forward(z(3, 6, 6))),
    "global_empty_plane": (ValueError, r"planes are empty \(0x4\)",  # was a NaN mean
                           lambda: K.global_avg_pool2d_forward(z(2, 3, 0, 4))),
}


@pytest.mark.parametrize("case", list(POOL_BWD_CASES))
def test_pool2d_backward_rejects(case):
    exc, match, call = POOL_BWD_CASES[case]
    with pytest.raises(exc, match=match):
        call()


ACT_CASES = {
    "relu_backward_x_shape": (ValueError, r"\bx\b",
                              lambda: K.relu_backward(z(2, 3), z(3, 2))),
    "sigmoid_backward_y_shape": (ValueError, r"\by\b",
                                 lambda: K.sigmoid_backward(z(2, 3), z(2, 4))),
    "tanh_backward_y_shape": (ValueError, r"\by\b",
                              lambda: K.tanh_backward(z(6), z(2, 3))),
    "relu_backward_dtype_mismatch": (TypeError, r"\bx\b|dtype",
                                     lambda: K.relu_backward(z(2, 3), z(2, 3, dtype=F32))),
    "relu_integer": (TypeError, r"\bx\b", lambda: K.relu_forward(np.arange(4))),
    "residual_add_shape": (ValueError, r"residual_add: b must have shape \(2, 3\)",
                           lambda: K.residual_add(z(2, 3), z(3, 2))),
    "residual_add_dtype_mismatch": (TypeError, r"residual_add: b",
                                    lambda: K.residual_add(z(2, 3), z(2, 3, dtype=F32))),
    "residual_add_relu_flag": (TypeError, r"residual_add: relu must be True or False",
                               lambda: K.residual_add(z(2, 3), z(2, 3), relu="no")),
    "sigmoid_list": (TypeError, r"\bx\b", lambda: K.sigmoid_forward([1.0, 2.0])),
}


@pytest.mark.parametrize("case", list(ACT_CASES))
def test_activation_rejects(case):
    exc, match, call = ACT_CASES[case]
    with pytest.raises(exc, match=match):
        call()


LIN_CASES = {
    "x_ndim_1": (ValueError, r"\bx\b", lambda: K.linear_forward(z(5), z(3, 5), None)),
    "w_ndim_3": (ValueError, r"weight|\bw\b",
                 lambda: K.linear_forward(z(2, 5), z(3, 5, 1), None)),
    "feature_mismatch": (ValueError, r"feature|weight",
                         lambda: K.linear_forward(z(2, 5), z(3, 4), None)),
    "bias_wrong_length": (ValueError, r"bias|\bb\b",
                          lambda: K.linear_forward(z(2, 5), z(3, 5), z(2))),
    "dtype_mismatch": (TypeError, r"dtype|weight|\bw\b",
                       lambda: K.linear_forward(z(2, 5, dtype=F32), z(3, 5), None)),
    "backward_dy_wrong_shape": (ValueError, r"\bdy\b",
                                lambda: K.linear_backward(z(2, 4), z(2, 5), z(3, 5))),
    "backward_feature_mismatch": (ValueError, r"feature|weight",
                                  lambda: K.linear_backward(z(2, 3), z(2, 5), z(3, 4))),
}


@pytest.mark.parametrize("case", list(LIN_CASES))
def test_linear_rejects(case):
    exc, match, call = LIN_CASES[case]
    with pytest.raises(exc, match=match):
        call()


LOSS_CASES = {
    "label_too_large": (ValueError, r"label",
                        lambda: K.softmax_cross_entropy(LOGITS, np.array([0, 5, 1]))),
    "label_negative": (ValueError, r"label",
                       lambda: K.softmax_cross_entropy(LOGITS, np.array([0, -1, 1]))),
    "too_few_labels": (ValueError, r"label",
                       lambda: K.softmax_cross_entropy(LOGITS, np.array([0, 1]))),
    "too_many_labels": (ValueError, r"label",
                        lambda: K.softmax_cross_entropy(LOGITS, np.array([0, 1, 2, 3]))),
    "labels_2d": (ValueError, r"label",
                  lambda: K.softmax_cross_entropy(LOGITS, LABELS[:, None])),
    "float_labels": (TypeError, r"label",
                     lambda: K.softmax_cross_entropy(LOGITS, LABELS.astype(F64))),
    "logits_1d": (ValueError, r"logits", lambda: K.softmax_cross_entropy(z(5), LABELS[:1])),
    "logits_integer": (TypeError, r"logits",
                       lambda: K.softmax_cross_entropy(np.zeros((3, 5), np.int64), LABELS)),
    "mse_shape_mismatch": (ValueError, r"target|pred",
                           lambda: K.mse_loss(z(3, 4), z(4, 3))),
    "mse_dtype_mismatch": (TypeError, r"target|dtype",
                           lambda: K.mse_loss(z(3, 4), z(3, 4, dtype=F32))),
    "mse_integer_pred": (TypeError, r"pred", lambda: K.mse_loss(np.ones((2, 2), np.int64),
                                                                z(2, 2))),
}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_loss_rejects(case):
    exc, match, call = LOSS_CASES[case]
    with pytest.raises(exc, match=match):
        call()


def test_messages_name_the_function():
    """Messages carry the public function's name, so a failure deep in a
    network points at the right call."""
    with pytest.raises(ValueError, match="conv2d_forward"):
        K.conv2d_forward(X, W, B, stride=0)
    with pytest.raises(ValueError, match="max_pool2d"):
        K.max_pool2d_forward(XP, 0)
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        K.softmax_cross_entropy(LOGITS, np.array([9, 9, 9]))


# (x shape, weight shape) with one axis of size 0; padding 1 makes the geometry valid otherwise
EMPTY_AXES = {"N": ((0, 2, 5, 5), (2, 2, 3, 3)), "C": ((2, 0, 5, 5), (2, 0, 3, 3)), "K": ((2, 2, 5, 5), (0, 2, 3, 3)),
              "H": ((2, 2, 0, 5), (2, 2, 1, 1)), "W": ((2, 2, 5, 0), (2, 2, 1, 3))}


@pytest.mark.parametrize("algorithm", ("auto",) + K.CONV_ALGORITHMS)
@pytest.mark.parametrize("axis", list(EMPTY_AXES))
def test_conv_refuses_empty_axes_for_every_algorithm(axis, algorithm):
    """An empty batch, no channels or empty planes are refused before any algorithm runs (they returned garbage
    gradients, raised ZeroDivisionError or numpy's errors)."""
    x_shape, w_shape = EMPTY_AXES[axis]
    x, w = z(*x_shape), z(*w_shape)
    with pytest.raises(ValueError, match=r"conv2d_forward: (x|weight) has an empty axis"):
        K.conv2d_forward(x, w, None, padding=1, algorithm=algorithm)
    with pytest.raises(ValueError, match=r"conv2d_backward: (x|weight) has an empty axis"):
        K.conv2d_backward(z(1, 1, 1, 1), x, w, padding=1, algorithm=algorithm)
    with pytest.raises(ValueError, match=r"conv2d_plan: (x_shape|w_shape) must be 4 positive ints"):
        K.conv2d_plan(x_shape, w_shape, padding=1, algorithm=algorithm)
    with pytest.raises(ValueError, match=r"conv2d: (x_shape|w_shape) must be 4 positive ints"):
        K.conv2d_output_shape(x_shape, w_shape, padding=1)
    if axis != "K":
        with pytest.raises(ValueError, match=r"im2col: x has an empty axis"):
            K.im2col(x, w_shape[2:], padding=1)


@pytest.mark.parametrize("bad", [None, (2, 3, 5), (2, 3, 5, 2.5), (2, 3, 5, -1), (True, 3, 5, 5), "2,3"])
def test_conv2d_output_shape_checks_both_shapes(bad):
    with pytest.raises(ValueError, match=r"conv2d: x_shape must be 4 positive ints"):
        K.conv2d_output_shape(bad, W.shape)
    with pytest.raises(ValueError, match=r"conv2d: w_shape must be 4 positive ints"):
        K.conv2d_output_shape(X.shape, bad)


@pytest.mark.parametrize("flag", ["False", None, 2.5, []])
def test_conv_need_input_grad_must_be_a_bool(flag):
    calls = {"conv2d_backward": lambda: K.conv2d_backward(DY, X, W, need_input_grad=flag),
             "conv2d_backward_im2col": lambda: K.conv2d_backward_im2col(DY, X, W, need_input_grad=flag),
             "conv2d_plan": lambda: K.conv2d_plan(X.shape, W.shape, need_input_grad=flag)}
    for fn, call in calls.items():
        with pytest.raises(TypeError, match=f"{fn}: need_input_grad must be True or False"):
            call()


def test_conv2d_plan_names_itself_for_an_unknown_dtype():
    with pytest.raises(TypeError, match="conv2d_plan: dtype must be float32 or float64, got 'nonsense'"):
        K.conv2d_plan(X.shape, W.shape, dtype="nonsense")


def test_conv_refuses_outputs_larger_than_memory():
    """A padding of 2**20 asks for 2**42 output pixels: refused before numpy's MemoryError."""
    for f in (K.conv2d_forward, K.conv2d_forward_im2col):
        with pytest.raises(ValueError, match=rf"{f.__name__}: the output of shape \(2, 4, 2097155, 2097155\)"):
            f(X, W, B, padding=2**20)
    with pytest.raises(ValueError, match=r"im2col: the columns of shape"):
        K.im2col(X, 2**30, padding=2**29)


@pytest.mark.parametrize("stride, padding", [(True, 1), (1.0, 1), (1, True), (1, 1.0), ((1, True), 1),
                                             (1, [1, 1.5]), (0, 1), (1, -1)])
def test_a_remembered_geometry_never_lets_a_bad_argument_through(stride, padding):
    """The checked convolutions remember accepted geometries: arguments equal to accepted ones (True == 1,
    1.0 == 1) are still refused, before and after the accepted call."""
    x, w = np.zeros((1, 2, 5, 5), F32), np.zeros((3, 2, 3, 3), F32)
    for _ in range(2):
        K.conv2d_forward(x, w, None, 1, 1)
        K.conv2d_forward(x, w, None, [1, 1], [1, 1])
        with pytest.raises((TypeError, ValueError), match="conv2d_forward: (stride|padding)"):
            K.conv2d_forward(x, w, None, stride, padding)
        with pytest.raises((TypeError, ValueError), match="conv2d_backward: (stride|padding)"):
            K.conv2d_backward(np.zeros((1, 3, 5, 5), F32), x, w, stride, padding)
