"""The flows the benchmark measures: RealNVP and TFP's Glow of the same size."""

import dataclasses
from typing import Any, Callable, Dict

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from benchmarks import flops
import tf_realnvp
from tf_realnvp import config
from tf_realnvp import training_mode
from tf_realnvp.flows import objective

tfb = tfp.bijectors
tfd = tfp.distributions

# `tf_realnvp.RealNVP` keyword arguments of each model the benchmark knows.
ARCHITECTURES = {
    # The paper's CIFAR-10 model (Dinh et al. 2017, Sec. 4.1): 13.2M weights.
    'cifar10': dict(num_scales=2, num_res_blocks=8, num_filters=64),
    'small': dict(num_scales=2, num_res_blocks=2, num_filters=32),
    # For smoke tests: seconds to build and compile.
    'tiny': dict(num_scales=2, num_res_blocks=1, num_filters=4),
    # For smoke tests of the scripts, not the model: one scale, so a quarter
    # of tiny's variables to trace and build.
    'micro': dict(num_scales=1, num_res_blocks=1, num_filters=4),
}
FLOWS = ('realnvp', 'glow')
# Keras dtype policies of the s/t networks; coupling arithmetic stays float32.
PRECISIONS = ('float32', 'mixed_bfloat16')
# L2 coefficient on the weight-normalization gains (Dinh et al. 2017, Sec. 4.1).
L2 = config.Config.l2


@dataclasses.dataclass
class FlowUnderTest:
  """A flow with what the benchmark needs to drive it and to count its work.

  Attributes:
    distribution: the flow, a `tfd.Distribution` over images.
    to_inputs: maps pixel intensities in `[0, 256)` to the flow's inputs.
    forward_flops: FLOPs of one image through `log_prob` or sampling,
      counted by hand: the work the model needs (see `flops.py`).
    settings: the constructor settings, for the report.
  """
  distribution: tfd.Distribution
  to_inputs: Callable[[tf.Tensor], tf.Tensor]
  forward_flops: int
  settings: Dict[str, Any]

  @property
  def parameters(self):
    return sum(int(np.prod(v.shape))
               for v in self.distribution.trainable_variables)


def make_train_step(flow, optimizer):
  """`x -> mean NLL` (nats per image), applying one Adam step on
  `tf_realnvp.loss`."""
  variables = flow.distribution.trainable_variables

  def train_step(x):
    with tf.GradientTape() as tape, training_mode.training():
      loss, mean_nll = objective.loss(flow.distribution, x, L2)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return mean_nll

  return train_step


def realnvp(event_shape, architecture, precision, recompute='none',
            num_res_blocks=None):
  """`tf_realnvp.RealNVP` of a named architecture, on pixel intensities,
  with another number of residual blocks if `num_res_blocks` is given."""
  settings = dict(ARCHITECTURES[architecture])
  if num_res_blocks:
    settings['num_res_blocks'] = num_res_blocks
  flow = tf_realnvp.RealNVP(
      event_shape, network_dtype=None if precision == 'float32' else precision,
      recompute=recompute, **settings)
  return FlowUnderTest(
      distribution=flow,
      to_inputs=lambda pixels: pixels,
      forward_flops=flops.realnvp_forward_flops(event_shape, **settings),
      settings=dict(settings))


def glow(event_shape, num_parameters, num_blocks, steps_per_block, precision,
         seed):
  """`tfp.bijectors.Glow` with about `num_parameters` weights, as a flow.

  The structure (`num_blocks` levels of `steps_per_block` steps, TFP's default
  coupling and exit networks, built from `tf_keras` layers) is fixed; the
  hidden width of the coupling networks is the one whose parameter count
  comes closest to `num_parameters`. The flow is a `TransformedDistribution`
  of a standard Normal on `H * W * C` values through Glow, on intensities
  scaled to `[-0.5, 0.5)` as in Kingma & Dhariwal (2018).

  With `precision='mixed_bfloat16'` the networks compute in bfloat16 and
  return float32, so the coupling arithmetic and log-dets stay float32.
  """
  def parameters(hidden):
    return glow_parameters(event_shape, num_blocks, steps_per_block, hidden)

  hidden = min(range(1, 4097),
               key=lambda h: abs(parameters(h) - num_parameters))

  def coupling_network(input_shape):
    return _float32_output(
        lambda: tfb.GlowDefaultNetwork(input_shape, num_hidden=hidden),
        precision)

  def exit_network(input_shape, output_chan):
    return _float32_output(
        lambda: tfb.GlowDefaultExitNetwork(input_shape, output_chan),
        precision)

  size = int(np.prod(event_shape))
  bijector = tfb.Glow(
      output_shape=event_shape, num_glow_blocks=num_blocks,
      num_steps_per_block=steps_per_block,
      coupling_bijector_fn=coupling_network, exit_bijector_fn=exit_network,
      seed=seed)
  distribution = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(0., 1.), [size]), bijector)
  return FlowUnderTest(
      distribution=distribution,
      to_inputs=lambda pixels: pixels / 256. - 0.5,
      forward_flops=flops.glow_forward_flops(
          event_shape, num_blocks, steps_per_block, hidden),
      settings=dict(num_glow_blocks=num_blocks,
                    num_steps_per_block=steps_per_block, num_hidden=hidden))


def glow_parameters(event_shape, num_blocks, steps_per_block, hidden):
  """Trainable weights of `tfp.bijectors.Glow` with TFP's default networks.

  A step on `C` channels: the coupling network (3x3 `C/2 -> hidden`, 1x1
  `hidden -> hidden`, 3x3 `hidden -> C`, with biases), the invertible 1x1
  convolution's LU factors (`C^2`) and ActNorm's shift and log-scale (`2C`);
  each exit: a 3x3 `C/2 -> C` convolution with bias.
  """
  total = 0
  shapes = flops.glow_block_shapes(event_shape, num_blocks)
  for index, (_, _, channels) in enumerate(shapes):
    half = channels // 2
    network = ((9 * half + 1) * hidden + (hidden + 1) * hidden
               + (9 * hidden + 1) * channels)
    total += steps_per_block * (network + channels**2 + 2 * channels)
    if index < len(shapes) - 1:
      total += 9 * half * channels + channels
  return total


def _float32_output(make_network, precision):
  """`make_network()` built under the `tf_keras` policy `precision`.

  A mixed-precision network gets a float32 identity layer on top, so it
  computes in low precision and hands float32 to the bijector.
  """
  if precision == 'float32':
    return make_network()
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(precision)
  try:
    network = make_network()
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)
  return tf_keras.Sequential(
      [network, tf_keras.layers.Activation('linear', dtype='float32')])
