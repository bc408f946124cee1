"""Activation normalization, Glow's ActNorm (Kingma & Dhariwal, 2018, Sec. 3.1)."""

import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import training_mode
from tf_realnvp.bijectors.own_variables import OwnVariables

# Added to the per-channel variance before the log at initialisation, so a
# constant channel gets a large but finite scale.
VARIANCE_FLOOR = 1e-6


class ActNorm(OwnVariables, tfp.bijectors.Bijector):
  """Per-channel affine map `z = (x - loc) * exp(-log_scale)`, data to latent.

  The bijector acts on the last axis (the channels of an image `[H, W, C]`,
  the entries of a vector `[D]`) and broadcasts over the others:

      forward:  z = (x - loc) * exp(-log_scale)
      inverse:  x = z * exp(log_scale) + loc
      log|det dz/dx| = -sum_c log_scale_c            per position

  so with `event_ndims=3` TFP's reduction over the event gives
  `-H * W * sum_c log_scale_c`, and with `event_ndims=1` `-sum_c log_scale_c`.
  `loc` and `log_scale` are the data's per-channel location and log spread.

  Data-dependent initialisation: `initialize(x)` sets `loc` and `log_scale`
  to the per-channel mean and log standard deviation of the batch `x` (over
  every axis but the last), so `forward(x)` has zero mean and unit variance
  per channel, and sets the non-trainable flag `initialized`. Until the flag
  is set, every call in the data direction (`forward`,
  `forward_log_det_jacobian`) first initializes from its own input, through a
  `tf.cond` on the flag: this works eagerly, inside `tf.function` and under
  XLA (`jit_compile=True`), and the first `flow.log_prob(batch)` of a
  distribution built on `Invert(...)` of this bijector initializes it (an
  empty batch leaves it to the next one). Calls
  in the latent-to-data direction (`inverse`, sampling) never initialize, nor
  does any call traced in `tf_realnvp.training_mode.frozen()` (an export to a
  format that stores the weights as constants).
  The flag is a variable, so a checkpoint restores it with `loc` and
  `log_scale` and a restored bijector is not initialized again. Under a
  `tf.distribute` strategy, call `initialize` on a batch in cross-replica
  context before training, so every replica shares the same statistics.

  #### Examples

  ```python
  actnorm = ActNorm(channels=3)
  z = actnorm.forward(x)   # x: [batch, 32, 32, 3]; initializes on x
  ```

  #### References

  [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with
       Invertible 1x1 Convolutions. NeurIPS 2018.
       https://arxiv.org/abs/1807.03039
  """

  def __init__(self, channels, dtype=tf.float32, validate_args=False,
               name='act_norm', variables=None):
    """Builds the bijector as the identity, not yet initialized.

    Args:
      channels: size of the last axis of the events.
      dtype: float dtype of the variables and of the inputs.
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
      variables: `{'loc', 'log_scale', 'initialized'}` of the bijector this
        one copies (what `copy()` passes); `None` creates new ones.
    """
    parameters = dict(locals())
    self._channels = int(channels)
    with tf.name_scope(name) as scope:
      variables = self._own_variables(parameters, lambda: dict(
          loc=tf.Variable(tf.zeros([channels], dtype), name='loc'),
          log_scale=tf.Variable(tf.zeros([channels], dtype), name='log_scale'),
          initialized=tf.Variable(False, trainable=False,
                                  name='initialized')))
      self._loc = variables['loc']
      self._log_scale = variables['log_scale']
      self._initialized = variables['initialized']
      super().__init__(
          forward_min_event_ndims=1,
          is_constant_jacobian=True,
          dtype=dtype,
          validate_args=validate_args,
          parameters=parameters,
          name=scope)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  @property
  def loc(self):
    return self._loc

  @property
  def log_scale(self):
    return self._log_scale

  @property
  def initialized(self):
    """Boolean `tf.Variable`: whether `loc` and `log_scale` were set from data."""
    return self._initialized

  def initialize(self, x):
    """Sets `loc`, `log_scale` from the batch `x` so `forward(x)` is standardized.

    Args:
      x: batch of events `[..., channels]` (data direction).
    """
    x = tf.convert_to_tensor(x, self.dtype)
    self._check_channels(x)
    mean, variance = tf.nn.moments(x, axes=list(range(x.shape.rank - 1)))
    self._loc.assign(mean)
    self._log_scale.assign(0.5 * tf.math.log(variance + VARIANCE_FLOOR))
    self._initialized.assign(True)

  def _initialize_once(self, x):
    if training_mode.is_frozen():
      return  # The values it holds are the weights (`training_mode.frozen`).
    # An empty batch has no statistics (its moments are NaN): it waits.
    tf.cond(self._initialized | tf.equal(tf.size(x), 0), lambda: None,
            lambda: self.initialize(x))

  def _check_channels(self, x):
    if x.shape[-1] is not None and x.shape[-1] != self._channels:
      raise ValueError(f'{self.name}: expected {self._channels} channels on '
                       f'the last axis, got shape {x.shape}.')

  def _forward(self, x):
    self._check_channels(x)
    self._initialize_once(x)
    return (x - self._loc) * tf.exp(-self._log_scale)

  def _inverse(self, y):
    self._check_channels(y)
    return y * tf.exp(self._log_scale) + self._loc

  def _forward_log_det_jacobian(self, x):
    self._initialize_once(x)
    return -tf.reduce_sum(self._log_scale)

  def _inverse_log_det_jacobian(self, y):
    return tf.reduce_sum(self._log_scale)


def initialize_actnorms(flow, log_prob_of_a_batch):
  """Initializes `flow`'s `ActNorm` layers on a batch, if needed.

  `ActNorm` sets its statistics on the first batch it sees. Inside a
  distributed step each replica would see only its share, and a mirrored
  variable cannot be assigned per replica; so call this in cross-replica
  context (under `strategy.scope()`, outside `strategy.run`) on a whole
  global batch: one `log_prob` then sets every replica alike.
  `log_prob_of_a_batch` is a function that computes `flow`'s `log_prob` of
  such a batch; it is called only when some layer is not initialized (nor
  restored).
  """
  # `read_value`: the truth value of a mirrored variable itself is always True.
  if any(isinstance(layer, ActNorm) and not layer.initialized.read_value()
         for layer in flow.submodules):
    log_prob_of_a_batch()

