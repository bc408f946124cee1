"""Conditioners: the s/t networks of the coupling layers, as Keras 3 layers."""

import keras
from keras import ops
import tensorflow as tf

from tf_realnvp import recompute
from tf_realnvp import training_mode
from tf_realnvp.bijectors import spline_coupling


class WeightNormDense(keras.layers.Layer):
  """Dense or 2-D convolution with weight normalization, `w = g v / ||v||`.

  The norm runs over every kernel axis but the last (one gain per output unit).

  Args:
    units: output units (channels).
    kernel_size: `None` for a dense layer, an int `k` for a `k x k`
      convolution with "same" padding.
    use_bias: whether the layer adds its own bias.
  """

  GAIN = 'gain'

  def __init__(self, units, kernel_size=None, use_bias=True, **kwargs):
    # The normalised kernel is computed from float32 variables even under a
    # mixed policy, then cast: in bfloat16 its norm would lose precision.
    # Without autocasting, `call` casts its input to the compute dtype itself.
    super().__init__(autocast=False, **kwargs)
    self.units = units
    self.kernel_size = kernel_size
    self.use_bias = use_bias

  def build(self, input_shape):
    fan_in = input_shape[-1]
    spatial = () if self.kernel_size is None else (self.kernel_size,) * 2
    self.direction = self.add_weight(
        name='direction', shape=spatial + (fan_in, self.units),
        initializer='he_normal')
    self.gain = self.add_weight(
        name=self.GAIN, shape=(self.units,),
        initializer='ones')
    if self.use_bias:
      self.bias = self.add_weight(
          name='bias', shape=(self.units,), initializer='zeros')

  def call(self, x):
    # Recomputed, the kernel waits for the input: computed when the backward
    # pass reaches the layer, not for every layer at its start, and never
    # merged with the forward pass's kernel (which would then be kept).
    with tf.control_dependencies([x] if recompute.is_recomputing() else []):
      kernel = self._kernel()
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

  def _kernel(self):
    axes = tuple(range(len(self.direction.shape) - 1))
    return self.direction * (self.gain * ops.rsqrt(
        ops.sum(ops.square(self.direction), axis=axes) + 1e-12))


class BatchNormalization(keras.layers.BatchNormalization):
  """Keras's batch normalization, which in a recomputation for gradients
  (`tf_realnvp.recompute`) normalizes with the batch's statistics again
  without updating the running averages a second time."""

  def call(self, inputs, training=None, mask=None):
    if not (training and recompute.is_recomputing()):
      return super().call(inputs, training=training, mask=mask)
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context else 1
    if self.synchronized and replicas > 1:
      raise ValueError(
          f'Batch normalization in the s/t networks cannot be recomputed '
          f'under {replicas} replicas: their statistics would be '
          'synchronized in the backward pass, which tf.distribute cannot '
          "order. Build the flow with recompute='none' or without it.")
    inputs = ops.cast(inputs, 'float32')
    mean, variance = self._moments(inputs, mask)
    outputs = ops.batch_normalization(
        inputs, mean, variance, axis=self.axis,
        offset=ops.cast(self.beta, 'float32'),
        scale=ops.cast(self.gamma, 'float32'), epsilon=self.epsilon)
    return ops.cast(outputs, self.compute_dtype)


def _batch_norm(dtype, name):
  """Batch normalization synchronized across replicas, with PyTorch's defaults
  (momentum 0.1 of the batch per update, epsilon 1e-5), which the reference
  implementation trains with."""
  return BatchNormalization(
      momentum=0.9, epsilon=1e-5, synchronized=True, dtype=dtype, name=name)


class PreActivation(keras.layers.Layer):
  """`relu(x)`, or `relu(batch_norm(x))` with `batch_norm=True`.

  Batch normalization (Ioffe & Szegedy, 2015) runs in training mode inside
  `tf_realnvp.training_mode.training()` (statistics of the batch, synchronized across
  replicas, running averages updated) and uses its running averages
  otherwise.
  """

  def __init__(self, batch_norm=False, **kwargs):
    super().__init__(**kwargs)
    self.norm = (_batch_norm(self.dtype_policy, 'batch_norm') if batch_norm
                 else None)

  def call(self, x):
    if self.norm is not None:
      x = self.norm(x, training=training_mode.is_training())
    return ops.relu(x)


class ResidualBlock(keras.layers.Layer):
  """Pre-activation residual block: `h + conv(act(conv(act(h)))) + b`.

  `act` is a ReLU, after batch normalization with `batch_norm=True`. The skip
  path keeps `h`'s dtype (float32 under a mixed policy); the convolutions
  compute in the policy's compute dtype. The second convolution's bias `b`
  is added after the skip, in `h`'s dtype: Grappler's remapper fails on a
  graph where a convolution, its bias and the skip addition follow one
  another in two blocks in a row (TF 2.21, oneDNN).

  When its network is recomputed for gradients (`tf_realnvp.recompute`),
  the block is recomputed once more from its own input: the backward pass
  then keeps the blocks' inputs and one block's activations at a time, not
  every activation of the network.
  """

  def __init__(self, num_filters, batch_norm=False, **kwargs):
    super().__init__(autocast=False, **kwargs)
    policy = self.dtype_policy
    self.first_activation = PreActivation(batch_norm, dtype=policy,
                                          name='first_activation')
    self.first = WeightNormDense(num_filters, 3, dtype=policy, name='first')
    self.second_activation = PreActivation(batch_norm, dtype=policy,
                                           name='second_activation')
    self.second = WeightNormDense(
        num_filters, 3, use_bias=False, dtype=policy, name='second')

  def build(self, input_shape):
    self.bias = self.add_weight(
        name='bias', shape=(input_shape[-1],), initializer='zeros')

  def call(self, h):
    if recompute.is_recomputing():
      return recompute.recomputed(lambda h: [self._block(h)], h)[0]
    return self._block(h)

  def _block(self, h):
    residual = self.second(self.second_activation(
        self.first(self.first_activation(h))))
    return tf.nn.bias_add(h + ops.cast(residual, h.dtype),
                          ops.cast(self.bias, h.dtype))


class _Conditioner(keras.layers.Layer):
  """Shared head: the last layer's output as `(shift, log_scale)` for an
  `AffineCoupling`, `(shift, None)` if `additive`, or `(raw,)` with
  `3 * spline_bins - 1` raw spline parameters per entry for a
  `SplineCoupling`.

  A conditioner maps the kept entries `b * x` of a coupling layer to
  `(shift, log_scale)` of the event's shape (Dinh et al., 2017, Sec. 3.3-3.4,
  4.1), or with `spline_bins=K` to the `3K - 1` raw parameters per entry of a
  `SplineCoupling` (Durkan et al., 2019):

  - the log-scale is `scale * tanh(h)` with a learned per-channel `scale`, so
    `exp(s)` cannot blow up early in training (a spline maps its interval
    onto itself, so its outputs stay bounded);
  - the last layer is a plain layer with zero weights, so every coupling
    starts as the identity;
  - hidden layers use weight normalization (Salimans & Kingma, 2016), whose
    gains are the "weight scale parameters" the paper penalises with L2
    (coefficient 5e-5); `scale_weights` lists them.

  Weight normalization, unlike batch normalization, makes each example's
  density a function of that example alone: the same numbers in training and
  evaluation, on one device or many. The ResNet can add batch normalization
  (`batch_norm=True`), which uses the batch's statistics in training mode
  (`tf_realnvp.training_mode`) and running averages otherwise.

  Under a mixed policy (`dtype='mixed_bfloat16'`) the hidden layers compute in
  bfloat16, while the first layer, the residual stream and the head stay in
  float32: the conditioner reads pixels in logit space and returns a shift and
  log-scale, and bfloat16's 8 significant bits (relative errors up to 2^-8)
  would round those to about one pixel level in logit space. These layers are
  under 4% of the FLOPs of any coupling. `benchmarks.precision_check` compares
  the two precisions in training.
  """

  def __init__(self, channels, additive, context_features=0, spline_bins=0,
               **kwargs):
    # The head runs in the variable dtype (float32 under a mixed policy):
    # shifts and log-scales need its precision (see the class docstring).
    super().__init__(autocast=False, **kwargs)
    if additive and spline_bins:
      raise ValueError('A conditioner is additive or for a spline, not both.')
    self.channels = channels
    self.additive = additive
    self.spline_bins = spline_bins
    self.context_features = context_features
    self.context_embedding = None

  def _build_context_embedding(self, units):
    """A learned linear map of the context's features to `units`.

    Of a class label's one-hot vector, it is a learned embedding per class.
    """
    if self.context_features:
      self.context_embedding = keras.layers.Dense(
          units, use_bias=False, dtype=self.variable_dtype,
          name='context_embedding')

  def _add_context(self, h, context):
    """`h` plus the context's embedding, broadcast over space for images."""
    if (context is None) != (self.context_embedding is None):
      raise ValueError(
          f'{self.name}: built with context_features={self.context_features}'
          f' but called {"without" if context is None else "with"} a context.')
    if context is None:
      return h
    embedding = self.context_embedding(context)
    if len(h.shape) == 4:
      embedding = embedding[:, None, None, :]
    return h + ops.cast(embedding, h.dtype)

  def _build_head(self, kernel_size):
    # A plain layer with zero kernel and bias (Glow's zero initialization,
    # Kingma & Dhariwal 2018, Sec. 3.3), not a weight-normalized one with
    # zero gains: both start every coupling as the identity, but Adam moves
    # each weight by about the learning rate per step, so a zero gain grows
    # its whole output unit by only that much per step while a zero kernel
    # grows it by about fan-in times as much (on real photos: BENCHMARKS.md,
    # "What closed the gap").
    if self.spline_bins:
      units = self.channels * spline_coupling.parameters_per_entry(
          self.spline_bins)
    else:
      units = self.channels * (1 if self.additive else 2)
    if kernel_size is None:
      self.head = keras.layers.Dense(
          units, kernel_initializer='zeros', dtype=self.variable_dtype,
          name='head')
    else:
      self.head = keras.layers.Conv2D(
          units, kernel_size, padding='same', kernel_initializer='zeros',
          dtype=self.variable_dtype, name='head')
    if not (self.additive or self.spline_bins):
      self.log_scale_factor = self.add_weight(
          name='log_scale_factor', shape=(self.channels,), initializer='ones')

  def _outputs(self, features):
    out = self.head(features)
    if self.spline_bins:
      return (ops.reshape(out, (-1, *out.shape[1:-1], self.channels,
                                out.shape[-1] // self.channels)),)
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

  `conv3x3(num_filters) -> num_blocks x [act, conv3x3, act, conv3x3, + skip]
  -> act -> conv3x3(2C)`, the hidden convolutions weight-normalized and the
  last one zero-initialized (see `_build_head`), where `act` is a ReLU
  (after batch normalization with `batch_norm=True`). Under a mixed policy
  the block convolutions compute in bfloat16, the rest in float32.

  Two options follow the PyTorch reference implementation (Chute, 2018):
  `concat_relu_input` feeds `relu(concat(x, -x))` to the first convolution
  (after batch normalization when `batch_norm`), so the network sees both
  signs of its input through a rectifier; `skip_outputs` sums a 1x1
  convolution of the stem and of every block's output and hands that sum,
  instead of the last block's output, to the head.

  Args:
    channels: channels C of the event (shift and log-scale each get C).
    num_blocks: residual blocks.
    num_filters: feature maps of the hidden convolutions.
    additive: whether to return only a shift (NICE).
    context_features: a conditional coupling's context features per
      example (0: none); `call(x, context)` adds their learned embedding to
      the stem's feature maps at every position.
    spline_bins: K > 0: return the raw parameters of a `SplineCoupling` of
      K bins instead of `(shift, log_scale)`.
    batch_norm: batch normalization before every ReLU (and of the input with
      `concat_relu_input`); see `tf_realnvp.training_mode`.
    concat_relu_input: whether the stem reads `relu(concat(x, -x))`.
    skip_outputs: whether the head reads the sum of 1x1 convolutions of every
      block's output.
  """

  def __init__(self, channels, num_blocks=8, num_filters=64, additive=False,
               batch_norm=False, concat_relu_input=False, skip_outputs=False,
               **kwargs):
    super().__init__(channels, additive, **kwargs)
    policy = self.dtype_policy
    self.input_norm = (_batch_norm(self.variable_dtype, 'input_norm')
                       if batch_norm and concat_relu_input else None)
    self.concat_relu_input = concat_relu_input
    self.stem = WeightNormDense(num_filters, 3, dtype=self.variable_dtype,
                                name='stem')
    self.blocks = [ResidualBlock(num_filters, batch_norm, dtype=policy,
                                 name=f'block{i}')
                   for i in range(num_blocks)]
    self.skips = [WeightNormDense(num_filters, 1, dtype=self.variable_dtype,
                                  name=f'skip{i}')
                  for i in range(num_blocks + 1)] if skip_outputs else None
    self.output_activation = PreActivation(
        batch_norm, dtype=self.variable_dtype, name='output_activation')
    self._build_context_embedding(num_filters)
    self._build_head(kernel_size=3)

  def call(self, x, context=None):
    if self.concat_relu_input:
      if self.input_norm is not None:
        x = self.input_norm(x, training=training_mode.is_training())
      x = ops.relu(ops.concatenate([x, -x], axis=-1))
    h = self._add_context(self.stem(x), context)
    if self.skips is None:
      for block in self.blocks:
        h = block(h)
      return self._outputs(self.output_activation(h))
    total = self.skips[0](h)
    for block, skip in zip(self.blocks, self.skips[1:]):
      h = block(h)
      total = total + ops.cast(skip(h), total.dtype)
    return self._outputs(self.output_activation(total))


class MLPConditioner(_Conditioner):
  """Multi-layer perceptron for vector couplings (the 2-D toy case).

  Args:
    channels: size D of the event vector.
    hidden_units: widths of the hidden ReLU layers.
    additive: whether to return only a shift (NICE).
    context_features: a conditional coupling's context features per
      example (0: none); `call(x, context)` adds their learned embedding to
      the first hidden layer before its ReLU.
    spline_bins: K > 0: return the raw parameters of a `SplineCoupling` of
      K bins instead of `(shift, log_scale)`.
  """

  def __init__(self, channels, hidden_units=(128, 128), additive=False,
               **kwargs):
    super().__init__(channels, additive, **kwargs)
    self.hidden = [
        WeightNormDense(units, name=f'hidden{i}', dtype=(
            self.variable_dtype if i == 0 else self.dtype_policy))
        for i, units in enumerate(hidden_units)]
    self._build_context_embedding(hidden_units[0])
    self._build_head(kernel_size=None)

  def call(self, x, context=None):
    h = ops.relu(self._add_context(self.hidden[0](x), context))
    for layer in self.hidden[1:]:
      h = ops.relu(layer(h))
    return self._outputs(h)
