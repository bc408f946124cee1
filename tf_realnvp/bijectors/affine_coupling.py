"""Masked affine coupling layer (Dinh et al., 2017, eq. 6-9 and 12)."""

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import prefer_static as ps

from tf_realnvp.bijectors.one_pass import OnePassBijector


class AffineCoupling(OnePassBijector):
  """Affine coupling `y = b*x + (1-b)*(x*exp(s(b*x)) + t(b*x))`.

  With a binary mask `b` (see `masks.py`) and a conditioner `(t, s) = net(b*x)`:

      forward:  y = b*x + (1-b) * (x * exp(s) + t)
      inverse:  x = b*y + (1-b) * (y - t) * exp(-s)       (b*x == b*y)
      log|det dy/dx| = sum_i (1-b_i) s_i

  The Jacobian is triangular once the variables are ordered with the kept ones
  first, so the log-det is the sum of the log-scales of the transformed entries
  (Dinh et al. 2017, eq. 6). A conditioner that returns `s = None` makes the
  layer additive (NICE, Dinh et al. 2015): `y = x + (1-b) t`, log-det 0.

  The coupling knows nothing about networks: `conditioner` is a Keras layer
  or a `tf.Module` mapping a batch `[N, *event_shape]` of masked events to
  `(shift, log_scale)`, each of that shape; inputs of any batch shape reach it
  flattened to one batch axis, and an empty batch does not reach it (see
  `_conditioner_outputs`). Its outputs are cast to the input dtype, so a
  conditioner may compute in bfloat16 while the coupling arithmetic and the
  log-det stay in float32.

  A conditional coupling (`context`, see `tf_realnvp.bijectors.context`)
  computes `(t, s) = net(b*x, c)` from a context `c` as well, passed as
  `conditional_input`; the Jacobian stays triangular, the log-det the same
  sum. The conditioner is then called as `conditioner(b*x, context=features)`
  with the context's features `[N, context.features]`.

  #### Examples

  ```python
  mask = masks.checkerboard_mask(8, 8, 3, parity=0)
  layer = AffineCoupling(mask, networks.ResNetConditioner(channels=3))
  z = layer.forward(x)   # x: [..., 8, 8, 3]
  ```

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  [2]: Laurent Dinh, David Krueger, Yoshua Bengio. NICE: Non-linear Independent
       Components Estimation. ICLR 2015 workshop. https://arxiv.org/abs/1410.8516
  """

  def __init__(self, mask, conditioner, additive=False, context=None,
               validate_args=False, name='affine_coupling'):
    """Builds the coupling.

    Args:
      mask: array of 0/1 of the event's shape; 1 marks entries kept unchanged.
      conditioner: `b*x -> (shift, log_scale)`, a Keras layer (built here on
        a batch of one so its variables exist and are tracked) or a
        `tf.Module` (whose `tf.Variable`s TF tracks).
      additive: whether the conditioner returns `log_scale=None` (NICE).
      context: a `Context` for a conditional coupling, else `None`.
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
    """
    parameters = dict(locals())
    mask = np.asarray(mask, dtype=np.float32)
    if not np.all((mask == 0) | (mask == 1)):
      raise ValueError('mask must hold only 0 and 1.')
    self._event_shape = tf.TensorShape(mask.shape)
    self._mask = mask
    self._additive = additive
    self._context = context
    with tf.name_scope(name) as scope:
      if hasattr(conditioner, 'built') and not conditioner.built:
        dtype = getattr(conditioner, 'compute_dtype', 'float32')
        conditioner(tf.zeros((1,) + mask.shape, dtype), **(
            {} if context is None else
            dict(context=tf.zeros((1, context.features), dtype))))
      if isinstance(conditioner, keras.layers.Layer):
        # Keras 3 variables are invisible to `tf.Module` discovery; track
        # their underlying `tf.Variable`s here and keep the layer itself out
        # of checkpoints so every weight is saved once.
        self._conditioner = self._no_dependency(conditioner)
        self._conditioner_variables = tuple(
            getattr(v, 'value', v) for v in conditioner.weights)
      elif isinstance(conditioner, tf.Module):
        self._conditioner = conditioner
      else:
        raise TypeError(
            f'{name}: the conditioner must be a keras.layers.Layer or a '
            f'tf.Module, so that its weights are trained and saved; got '
            f'{type(conditioner).__name__}. Wrap the function in a Keras '
            'layer.')
      super().__init__(
          forward_min_event_ndims=mask.ndim,
          is_constant_jacobian=additive,
          validate_args=validate_args,
          parameters=parameters,
          name=scope)

  @property
  def mask(self):
    return self._mask

  @property
  def conditioner(self):
    return self._conditioner

  @property
  def additive(self):
    return self._additive

  @property
  def context(self):
    """The `Context` the layer reads, or `None`."""
    return self._context

  @property
  def conditional(self):
    """Whether the coupling reads `conditional_input`."""
    return self._context is not None

  def _shift_and_log_scale(self, kept, dtype, conditional_input=None):
    """Runs the conditioner on the kept entries; zeroes its outputs there.

    The conditioner sees a batch with exactly one batch axis (a Keras
    convolution needs `[N, H, W, C]`): any batch shape of `kept`, none
    included, is flattened into it and restored on the outputs. A context
    and the events broadcast against each other's batch shapes.
    """
    event = self._event_shape.as_list()
    shape = ps.shape(kept)
    context = None
    if self._context is not None:
      batch_shape, context = self._context.batch_and_features(
          kept, len(event), conditional_input, self.validate_args)
      shape = ps.concat([batch_shape, event], axis=0)
      kept = tf.broadcast_to(kept, shape)
    outputs = self._conditioner_outputs(
        tf.reshape(kept, [-1] + event), dtype, context)
    transformed = 1. - tf.constant(self._mask, dtype)

    def restore(output):
      return tf.reshape(output, shape) * transformed

    if self._additive:
      return restore(outputs[0]), None
    return restore(outputs[0]), restore(outputs[1])

  def _conditioner_outputs(self, flat, dtype, context=None):
    """`[shift]`, or `[shift, log_scale]`, of a flat batch, cast to `dtype`.

    An empty batch never reaches the conditioner: its outputs are empty too.
    TF 2.21's oneDNN convolution (float32, bfloat16) hands back an empty
    input unchanged, with the input's channel count instead of the filters'
    (the next bias add then fails), and batch normalization in training mode
    would take statistics of no examples. Whether the batch is empty is
    decided when tracing if its size is known then (a training step with a
    fixed batch size: no added op); otherwise by a `tf.cond`, which Grappler
    lowers to a switch that keeps the convolutions' fusions. (There, under
    several replicas, a replica with an empty share would skip the
    all-reduce of synchronized batch normalization in training mode; the
    trainer's training batches have a fixed size.)
    """
    def run():
      shift, log_scale = self._conditioner(flat, **(
          {} if context is None else dict(context=context)))
      if self._additive and log_scale is not None:
        raise ValueError('An additive coupling needs a conditioner that '
                         'returns log_scale=None.')
      return [tf.cast(shift, dtype)] + (
          [] if self._additive else [tf.cast(log_scale, dtype)])

    def nothing():
      return [tf.zeros_like(flat, dtype)] * (1 if self._additive else 2)

    size = flat.shape[0]
    if size is None:
      return tf.cond(tf.shape(flat)[0] > 0, run, nothing)
    return run() if size else nothing()

  def _check_event_shape(self, x):
    ndims = self._event_shape.rank
    if x.shape.rank is not None and (
        x.shape.rank < ndims
        or not self._event_shape.is_compatible_with(x.shape[-ndims:])):
      raise ValueError(
          f'{self.name}: expected events of shape {self._event_shape} '
          f'(rank {ndims}) at the end of the input shape, got {x.shape}.')

  def _sum_event(self, log_scale, like):
    axes = list(range(-self._event_shape.rank, 0))
    if log_scale is None:
      return tf.zeros(tf.shape(like)[:-self._event_shape.rank], like.dtype)
    return tf.reduce_sum(log_scale, axis=axes)

  def _forward_and_log_det(self, x, conditional_input=None):
    self._check_event_shape(x)
    shift, log_scale = self._shift_and_log_scale(
        x * tf.constant(self._mask, x.dtype), x.dtype, conditional_input)
    y = x + shift if log_scale is None else x * tf.exp(log_scale) + shift
    return y, self._sum_event(log_scale, x)

  def _inverse_and_log_det(self, y, conditional_input=None):
    self._check_event_shape(y)
    shift, log_scale = self._shift_and_log_scale(
        y * tf.constant(self._mask, y.dtype), y.dtype, conditional_input)
    x = y - shift if log_scale is None else (y - shift) * tf.exp(-log_scale)
    return x, -self._sum_event(log_scale, y)
