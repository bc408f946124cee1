"""FLOPs of one image through RealNVP and Glow: by hand, and by TF's profiler.

By hand: a `k x k` convolution from `c_in` to `c_out` channels on an `H x W`
map costs `2 H W k^2 c_in c_out` FLOPs (a multiply and an add per weight and
output pixel); the counts below add up every convolution of one `log_prob`
and leave out the elementwise ops, which TF's graph profiler puts at under 1%
of the total. Sampling runs the same networks, so it costs the same. A
training step costs 3 forward passes: for every forward product the backward
pass computes one for the input gradient and one for the weight gradient.

By profiler: `profiled_flops` sums the FLOPs TensorFlow registers for each op
of a traced graph (`tf.compat.v1.profiler`), elementwise ops and the
optimizer update included; the benchmark reports it beside the hand count.
"""

import tensorflow as tf


def conv_flops(height, width, kernel_size, channels_in, channels_out):
  """`2 H W k^2 c_in c_out`: FLOPs of one image through one convolution."""
  return 2 * height * width * kernel_size**2 * channels_in * channels_out


def realnvp_forward_flops(event_shape, num_scales, num_res_blocks, num_filters):
  """Convolution FLOPs of one image through `tf_realnvp.RealNVP`'s log_prob.

  Each coupling's ResNet runs on its whole event (masked entries are zeros,
  not skipped): a 3x3 stem `C -> F`, `2 num_res_blocks` 3x3 convolutions
  `F -> F` and a 3x3 head `F -> 2C` (shift and log-scale). Every scale but
  the last has 3 checkerboard couplings on `(H, W, C)` and 3 channel
  couplings on the squeezed `(H/2, W/2, 4C)`, and hands `(H/2, W/2, 2C)` to
  the next scale, whose ResNets have `2F` filters; the last scale has 4
  checkerboard couplings (Dinh et al. 2017, Sec. 3.6, 4.1).
  """
  height, width, channels = event_shape

  def resnets(count, height, width, channels, filters):
    return count * (
        conv_flops(height, width, 3, channels, filters)
        + 2 * num_res_blocks * conv_flops(height, width, 3, filters, filters)
        + conv_flops(height, width, 3, filters, 2 * channels))

  total = 0
  filters = num_filters
  for _ in range(num_scales - 1):
    total += resnets(3, height, width, channels, filters)
    height, width = height // 2, width // 2
    total += resnets(3, height, width, 4 * channels, filters)
    channels, filters = 2 * channels, 2 * filters
  return total + resnets(4, height, width, channels, filters)


def glow_block_shapes(event_shape, num_blocks):
  """`(H, W, C)` entering each block of `tfp.bijectors.Glow`, data side first.

  Each block starts with a squeeze to `(H/2, W/2, 4C)`; after every block
  but the last, half of its channels exit to the latent.
  """
  height, width, channels = event_shape
  shapes = []
  for _ in range(num_blocks):
    height, width, channels = height // 2, width // 2, 4 * channels
    shapes.append((height, width, channels))
    channels //= 2
  return shapes


def glow_forward_flops(event_shape, num_blocks, steps_per_block,
                       hidden_channels):
  """Convolution FLOPs of one image through `tfp.bijectors.Glow`'s inverse.

  A step on `(H, W, C)` runs `GlowDefaultNetwork` (3x3 `C/2 -> hidden`, 1x1
  `hidden -> hidden`, 3x3 `hidden -> C`) and an invertible 1x1 convolution
  `C -> C`; each exit runs `GlowDefaultExitNetwork` (3x3 `C/2 -> C`).

  This is the work the model needs. TFP's coupling (`tfb.RealNVP`) calls its
  network once for the transform and again for the log-det, so the traced
  `log_prob` graph holds every network twice (the profiler counts about 2x);
  XLA merges the copies, plain TensorFlow runs both.
  """
  total = 0
  shapes = glow_block_shapes(event_shape, num_blocks)
  for index, (height, width, channels) in enumerate(shapes):
    half = channels // 2
    step = (conv_flops(height, width, 3, half, hidden_channels)
            + conv_flops(height, width, 1, hidden_channels, hidden_channels)
            + conv_flops(height, width, 3, hidden_channels, channels)
            + conv_flops(height, width, 1, channels, channels))
    total += steps_per_block * step
    if index < len(shapes) - 1:
      total += conv_flops(height, width, 3, half, channels)
  return total


def profiled_flops(concrete_function):
  """FLOPs TensorFlow's profiler counts in a traced graph (static shapes)."""
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  profile = tf.compat.v1.profiler.profile(
      concrete_function.graph, options=options)
  return profile.total_float_ops
