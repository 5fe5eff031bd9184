"""Checked CNN kernels on numpy arrays, and the raw ``@njit`` kernels behind them.

Every checked function validates its arguments once, allocates its outputs
with the input's dtype (float32 or float64) and runs raw kernels.  The raw
kernels (``conv2d_forward_direct``, ``max_pool2d_forward_kernel``, ...) are
importable from here too: they write into arrays you allocate, check
nothing, and can be called from your own ``@njit`` functions.

Images are NCHW: x (N, C, H, W); conv weights are (K, C, R, S) as PyTorch's.
This module only re-exports; each op family lives in its own module:

=================  ===========================================================
``conv``           convolution, im2col/col2im; ``conv_geometry`` checks a call's sizes,
                   ``conv_plan`` chooses its algorithms, ``conv_tune`` times them
                   (``algorithm="tuned"``)
``pool``           max / average / global average / global max pooling
``activation``     ReLU, leaky ReLU, sigmoid, tanh, softmax
``norm``           batch normalisation
``linear``         fully connected layers
``loss``           softmax cross-entropy, mean squared error
``local``          locally connected layers (unshared filters)
=================  ===========================================================
"""

from ._activations import (
    leaky_relu_backward_kernel,
    leaky_relu_forward_kernel,
    relu_backward_kernel,
    relu_forward_kernel,
    residual_add_kernel,
    sigmoid_backward_kernel,
    sigmoid_forward_kernel,
    softmax_backward_kernel,
    softmax_forward_kernel,
    tanh_backward_kernel,
    tanh_forward_kernel,
)
from ._conv_batchlast import (
    conv2d_backward_input_batchlast,
    conv2d_backward_weight_batchlast,
    conv2d_forward_batchlast,
    to_batch_last,
    to_pixel_batch_last,
)
from ._conv_channellast import (
    conv2d_backward_input_channellast,
    conv2d_backward_weight_channellast,
    conv2d_forward_channellast,
    conv2d_forward_channellast_padded,
    from_channel_last,
    input_grad_frame,
    to_channel_last,
)
from ._conv_depthwise import (
    conv2d_backward_input_depthwise,
    conv2d_backward_weight_depthwise,
    conv2d_forward_depthwise,
    depthwise_frame,
)
from ._conv_depthwise_s2 import (
    conv2d_forward_depthwise_s2,
    conv2d_forward_depthwise_s2_rows,
    depthwise_s2_fits,
    depthwise_s2_rows_scratch,
    depthwise_s2_scratch,
)
from ._conv_depthwise_s2_input_stacked import (
    conv2d_backward_input_depthwise_s2_stacked,
    depthwise_s2_input_stack,
    depthwise_s2_input_stacked_preferred,
    depthwise_s2_input_stacked_scratch,
)
from ._conv_depthwise_s2_stacked import (
    conv2d_forward_depthwise_s2_stacked,
    depthwise_s2_stack,
    depthwise_s2_stacked_scratch,
)
from ._conv_depthwise_weight_stacked import (
    conv2d_backward_weight_depthwise_s2_stacked,
    conv2d_backward_weight_depthwise_stacked,
    depthwise_s2_weight_stack,
    depthwise_s2_weight_stacked_preferred,
    depthwise_s2_weight_stacked_scratch,
    depthwise_weight_stack,
    depthwise_weight_stacked_preferred,
    depthwise_weight_stacked_scratch,
)
from ._conv_depthwise_stacked import (
    conv2d_forward_depthwise_stacked,
    depthwise_stack,
    depthwise_stacked_fits,
    depthwise_stacked_preferred,
    depthwise_stacked_scratch,
)
from ._conv_im2col import col2im_kernel, im2col_kernel
from ._conv_rows import conv2d_backward_weight_rows, conv2d_forward_rows, rows_padded_length
from ._conv_nchw import (
    conv2d_backward_bias,
    conv2d_backward_input_direct,
    conv2d_backward_weight_direct,
    conv2d_forward_direct,
)
from ._conv_winograd import (
    conv2d_backward_weight_winograd,
    conv2d_forward_winograd,
    conv2d_forward_winograd_padded,
    winograd_filter,
)
from ._dense import (
    linear_backward_bias_kernel,
    linear_backward_input_kernel,
    linear_backward_weight_kernel,
    linear_forward_kernel,
)
from ._dense_rows import linear_forward_rows_kernel
from ._local import (
    locally_connected2d_backward_bias_kernel,
    locally_connected2d_backward_input_kernel,
    locally_connected2d_backward_weight_kernel,
    locally_connected2d_forward_kernel,
)
from ._losses import mse_kernel, softmax_cross_entropy_kernel
from ._norm import (
    batch_norm_backward_kernel,
    batch_norm_fold_kernel,
    batch_norm_forward_eval_kernel,
    batch_norm_forward_train_kernel,
)
from ._pool import (
    avg_pool2d_backward_kernel,
    avg_pool2d_forward_kernel,
    global_avg_pool2d_backward_kernel,
    global_avg_pool2d_forward_kernel,
    global_max_pool2d_backward_kernel,
    global_max_pool2d_forward_kernel,
    max_pool2d_2x2_forward_kernel,
    max_pool2d_2x2_padded_kernel,
    max_pool2d_backward_kernel,
    max_pool2d_forward_kernel,
)
from ._sgd import sgd_update_kernel
from ._tasks import register_cached_task_bodies
from ._workspace import clear_workspace, workspace_usage
from .activation import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    residual_add,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .conv import (
    col2im,
    conv2d_backward,
    conv2d_backward_im2col,
    conv2d_forward,
    conv2d_forward_im2col,
    conv2d_plan,
    im2col,
)
from .conv_geometry import conv2d_output_shape
from .conv_plan import ALGORITHMS as CONV_ALGORITHMS
from .conv_plan import ConvPlan, ConvPlans
from .conv_tune import clear_tuned_plans, load_tuned_plans, save_tuned_plans, tuned_plans
from .linear import linear_backward, linear_forward
from .local import locally_connected2d_backward, locally_connected2d_forward, locally_connected2d_output_shape
from .loss import mse_loss, softmax_cross_entropy
from .norm import (
    batch_norm1d_backward,
    batch_norm1d_forward,
    batch_norm2d_backward,
    batch_norm2d_forward,
    batch_norm_training_forward,
    batch_norm_update_running,
)
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    global_max_pool2d_backward,
    global_max_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool2d_output_shape,
)

__all__ = [
    # convolution
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_forward_im2col",
    "conv2d_backward_im2col",
    "conv2d_output_shape",
    "conv2d_plan",
    "CONV_ALGORITHMS",
    "ConvPlan",
    "ConvPlans",
    "im2col",
    "col2im",
    "clear_workspace",
    "workspace_usage",
    "tuned_plans",
    "save_tuned_plans",
    "load_tuned_plans",
    "clear_tuned_plans",
    # pooling
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "pool2d_output_shape",
    "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
    "global_max_pool2d_forward",
    "global_max_pool2d_backward",
    # activations
    "relu_forward",
    "relu_backward",
    "residual_add",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "softmax_forward",
    "softmax_backward",
    # normalisation
    "batch_norm2d_forward",
    "batch_norm2d_backward",
    "batch_norm1d_forward",
    "batch_norm1d_backward",
    "batch_norm_training_forward",
    "batch_norm_update_running",
    # fully connected, losses, locally connected
    "linear_forward",
    "linear_backward",
    "softmax_cross_entropy",
    "mse_loss",
    "locally_connected2d_output_shape",
    "locally_connected2d_forward",
    "locally_connected2d_backward",
    # raw @njit kernels
    "register_cached_task_bodies",
    "conv2d_forward_direct",
    "conv2d_backward_input_direct",
    "conv2d_backward_weight_direct",
    "conv2d_backward_bias",
    "to_batch_last",
    "to_pixel_batch_last",
    "conv2d_forward_batchlast",
    "conv2d_backward_input_batchlast",
    "conv2d_backward_weight_batchlast",
    "rows_padded_length",
    "conv2d_forward_rows",
    "conv2d_backward_weight_rows",
    "to_channel_last",
    "from_channel_last",
    "input_grad_frame",
    "conv2d_forward_channellast",
    "conv2d_forward_channellast_padded",
    "conv2d_backward_input_channellast",
    "conv2d_backward_weight_channellast",
    "winograd_filter",
    "conv2d_forward_winograd",
    "conv2d_forward_winograd_padded",
    "conv2d_backward_weight_winograd",
    "depthwise_frame",
    "conv2d_forward_depthwise",
    "conv2d_backward_weight_depthwise",
    "conv2d_backward_input_depthwise",
    "depthwise_s2_fits",
    "depthwise_s2_scratch",
    "conv2d_forward_depthwise_s2",
    "depthwise_s2_rows_scratch",
    "conv2d_forward_depthwise_s2_rows",
    "depthwise_s2_stack",
    "depthwise_s2_stacked_scratch",
    "conv2d_forward_depthwise_s2_stacked",
    "depthwise_s2_input_stacked_preferred",
    "depthwise_s2_input_stack",
    "depthwise_s2_input_stacked_scratch",
    "conv2d_backward_input_depthwise_s2_stacked",
    "depthwise_s2_weight_stacked_preferred",
    "depthwise_s2_weight_stack",
    "depthwise_s2_weight_stacked_scratch",
    "conv2d_backward_weight_depthwise_s2_stacked",
    "depthwise_weight_stacked_preferred",
    "depthwise_weight_stack",
    "depthwise_weight_stacked_scratch",
    "conv2d_backward_weight_depthwise_stacked",
    "depthwise_stacked_fits",
    "depthwise_stacked_preferred",
    "depthwise_stack",
    "depthwise_stacked_scratch",
    "conv2d_forward_depthwise_stacked",
    "im2col_kernel",
    "col2im_kernel",
    "max_pool2d_forward_kernel",
    "max_pool2d_2x2_forward_kernel",
    "max_pool2d_2x2_padded_kernel",
    "max_pool2d_backward_kernel",
    "avg_pool2d_forward_kernel",
    "avg_pool2d_backward_kernel",
    "global_avg_pool2d_forward_kernel",
    "global_avg_pool2d_backward_kernel",
    "global_max_pool2d_forward_kernel",
    "global_max_pool2d_backward_kernel",
    "relu_forward_kernel",
    "relu_backward_kernel",
    "residual_add_kernel",
    "sigmoid_forward_kernel",
    "sigmoid_backward_kernel",
    "tanh_forward_kernel",
    "tanh_backward_kernel",
    "leaky_relu_forward_kernel",
    "leaky_relu_backward_kernel",
    "softmax_forward_kernel",
    "softmax_backward_kernel",
    "batch_norm_forward_train_kernel",
    "batch_norm_forward_eval_kernel",
    "batch_norm_backward_kernel",
    "batch_norm_fold_kernel",
    "linear_forward_kernel",
    "linear_forward_rows_kernel",
    "linear_backward_input_kernel",
    "linear_backward_weight_kernel",
    "linear_backward_bias_kernel",
    "softmax_cross_entropy_kernel",
    "mse_kernel",
    "sgd_update_kernel",
    "locally_connected2d_forward_kernel",
    "locally_connected2d_backward_input_kernel",
    "locally_connected2d_backward_weight_kernel",
    "locally_connected2d_backward_bias_kernel",
]
