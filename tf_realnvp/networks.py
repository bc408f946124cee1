"""Conditioners: the s/t networks of the coupling layers, as Keras 3 layers.

A conditioner maps the kept entries `b * x` of a coupling layer to
`(shift, log_scale)` of the event's shape (Dinh et al., 2017, Sec. 3.3-3.4,
4.1):

- the log-scale is `scale * tanh(h)` with a learned per-channel `scale`, so
  `exp(s)` cannot blow up early in training;
- the last layer starts at zero, so every coupling starts as the identity;
- hidden layers use weight normalization (Salimans & Kingma, 2016), whose
  gains are the "weight scale parameters" the paper penalises with L2
  (coefficient 5e-5); `scale_weights` lists them.

Weight normalization, unlike batch normalization, makes each example's
density a function of that example alone: the same numbers in training and
evaluation, on one device or many.

Under a mixed policy (`dtype='mixed_bfloat16'`) the hidden layers compute in
bfloat16, while the first layer, the residual stream and the head stay in
float32: the conditioner reads pixels in logit space and returns a shift and
log-scale, and bfloat16's 8 significant bits (relative errors up to 2^-8)
would round those to about one pixel level in logit space. These layers are
under 4% of the FLOPs of any coupling. `benchmarks.precision_check` compares
the two precisions in training.
"""

import keras
from keras import ops
import tensorflow as tf


class WeightNormDense(keras.layers.Layer):
  """Dense or 2-D convolution with weight normalization, `w = g v / ||v||`.

  The norm runs over every kernel axis but the last (one gain per output unit).
  With `zero_init=True` the gains start at 0, so the layer starts as the zero
  map while `v` keeps a direction to learn (a zero `v` would have no norm).

  Args:
    units: output units (channels).
    kernel_size: `None` for a dense layer, an int `k` for a `k x k`
      convolution with "same" padding.
    zero_init: whether the layer starts as the zero map.
    use_bias: whether the layer adds its own bias.
  """

  GAIN = 'gain'

  def __init__(self, units, kernel_size=None, zero_init=False, use_bias=True,
               **kwargs):
    # The normalised kernel is computed from float32 variables even under a
    # mixed policy, then cast: in bfloat16 its norm would lose precision.
    # Without autocasting, `call` casts its input to the compute dtype itself.
    super().__init__(autocast=False, **kwargs)
    self.units = units
    self.kernel_size = kernel_size
    self.zero_init = zero_init
    self.use_bias = use_bias

  def build(self, input_shape):
    fan_in = input_shape[-1]
    spatial = () if self.kernel_size is None else (self.kernel_size,) * 2
    self.direction = self.add_weight(
        name='direction', shape=spatial + (fan_in, self.units),
        initializer='he_normal')
    self.gain = self.add_weight(
        name=self.GAIN, shape=(self.units,),
        initializer='zeros' if self.zero_init else 'ones')
    if self.use_bias:
      self.bias = self.add_weight(
          name='bias', shape=(self.units,), initializer='zeros')

  def call(self, x):
    axes = tuple(range(len(self.direction.shape) - 1))
    kernel = self.direction * (self.gain * ops.rsqrt(
        ops.sum(ops.square(self.direction), axis=axes) + 1e-12))
    kernel = ops.cast(kernel, self.compute_dtype)
    x = ops.cast(x, self.compute_dtype)
    if self.kernel_size is None:
      y = ops.matmul(x, kernel)
    else:
      y = ops.conv(x, kernel, padding='same')
    if not self.use_bias:
      return y
    # `bias_add`, not `+`: oneDNN fuses it into the convolution and its bias
    # gradient into the kernel gradient (`Conv2DBackpropFilterWithBias`),
    # where a broadcast `+` costs a separate reduction over the batch.
    return tf.nn.bias_add(y, ops.cast(self.bias, self.compute_dtype))


class ResidualBlock(keras.layers.Layer):
  """Pre-activation residual block: `h + conv(relu(conv(relu(h)))) + b`.

  The skip path keeps `h`'s dtype (float32 under a mixed policy); the
  convolutions compute in the policy's compute dtype. The second
  convolution's bias `b` is added after the skip, in `h`'s dtype: Grappler's
  remapper fails on a graph where a convolution, its bias and the skip
  addition follow one another in two blocks in a row (TF 2.21, oneDNN).
  """

  def __init__(self, num_filters, **kwargs):
    super().__init__(autocast=False, **kwargs)
    self.first = WeightNormDense(
        num_filters, 3, dtype=self.dtype_policy, name='first')
    self.second = WeightNormDense(
        num_filters, 3, use_bias=False, dtype=self.dtype_policy,
        name='second')

  def build(self, input_shape):
    self.bias = self.add_weight(
        name='bias', shape=(input_shape[-1],), initializer='zeros')

  def call(self, h):
    residual = ops.cast(self.second(ops.relu(self.first(ops.relu(h)))),
                        h.dtype)
    return tf.nn.bias_add(h + residual, ops.cast(self.bias, h.dtype))


class _Conditioner(keras.layers.Layer):
  """Shared head: splits the last layer's output into `(shift, log_scale)`."""

  def __init__(self, channels, additive, **kwargs):
    # The head runs in the variable dtype (float32 under a mixed policy):
    # shifts and log-scales need its precision (see the module docstring).
    super().__init__(autocast=False, **kwargs)
    self.channels = channels
    self.additive = additive

  def _build_head(self, kernel_size):
    self.head = WeightNormDense(
        self.channels * (1 if self.additive else 2), kernel_size,
        zero_init=True, dtype=self.variable_dtype, name='head')
    if not self.additive:
      self.log_scale_factor = self.add_weight(
          name='log_scale_factor', shape=(self.channels,), initializer='ones')

  def _shift_and_log_scale(self, features):
    out = self.head(features)
    if self.additive:
      return out, None
    shift, raw = ops.split(out, 2, axis=-1)
    return shift, self.log_scale_factor * ops.tanh(raw)

  @property
  def scale_weights(self):
    """The weight-normalization gains, for the paper's L2 penalty."""
    return [w for w in self.weights if w.name == WeightNormDense.GAIN]


class ResNetConditioner(_Conditioner):
  """Convolutional residual network for image couplings (Dinh et al., Sec. 4.1).

  `conv3x3(num_filters) -> num_blocks x [relu, conv3x3, relu, conv3x3, + skip]
  -> relu -> conv3x3(2C)`, weight-normalized throughout. Under a mixed policy
  the block convolutions compute in bfloat16, the rest in float32.

  Args:
    channels: channels C of the event (shift and log-scale each get C).
    num_blocks: residual blocks.
    num_filters: feature maps of the hidden convolutions.
    additive: whether to return only a shift (NICE).
  """

  def __init__(self, channels, num_blocks=8, num_filters=64, additive=False,
               **kwargs):
    super().__init__(channels, additive, **kwargs)
    policy = self.dtype_policy
    self.stem = WeightNormDense(num_filters, 3, dtype=self.variable_dtype,
                                name='stem')
    self.blocks = [ResidualBlock(num_filters, dtype=policy, name=f'block{i}')
                   for i in range(num_blocks)]
    self._build_head(kernel_size=3)

  def call(self, x):
    h = self.stem(x)
    for block in self.blocks:
      h = block(h)
    return self._shift_and_log_scale(ops.relu(h))


class MLPConditioner(_Conditioner):
  """Multi-layer perceptron for vector couplings (the 2-D toy case).

  Args:
    channels: size D of the event vector.
    hidden_units: widths of the hidden ReLU layers.
    additive: whether to return only a shift (NICE).
  """

  def __init__(self, channels, hidden_units=(128, 128), additive=False,
               **kwargs):
    super().__init__(channels, additive, **kwargs)
    self.hidden = [
        WeightNormDense(units, name=f'hidden{i}', dtype=(
            self.variable_dtype if i == 0 else self.dtype_policy))
        for i, units in enumerate(hidden_units)]
    self._build_head(kernel_size=None)

  def call(self, x):
    h = x
    for layer in self.hidden:
      h = ops.relu(layer(h))
    return self._shift_and_log_scale(h)
