"""Batch normalization as a bijector (Dinh et al., 2017, Sec. 3.7, App. E)."""

import tensorflow as tf
from tensorflow_probability.python.internal import cache_util
from tensorflow_probability.python.internal import prefer_static as ps

from tf_realnvp import training_mode
from tf_realnvp.bijectors.one_pass import OnePassBijector
from tf_realnvp.bijectors.own_variables import OwnVariables

# The keyword the statistics' version travels under in TFP's cache keys.
_CACHE_KEY = 'batch_norm_statistics'


class _CacheByStatistics(cache_util.BijectorCacheWithGreedyAttrs):
  """TFP's greedy bijector cache, keyed also on the statistics in use.

  TFP hands back the stored result for a tensor it has already transformed.
  Here a result computed in training mode is never handed back in evaluation
  mode, nor the reverse, and an evaluation result computed before a training
  call moved the running averages is not handed back after it. Within
  training mode a tensor keeps its result: the transform and the log-det of
  one `log_prob` share one set of batch statistics and one update of the
  running averages. The version counts training calls made from Python (or
  traced); a traced training step that runs again does not move it, just as
  an optimizer step invalidates no cached result of any TFP bijector.
  """

  def _key(self):
    if training_mode.is_training():
      return 'training'
    return ('evaluation', self.bijector.statistics_version)

  def _lookup(self, value, forward_name, inverse_name, **kwargs):
    kwargs[_CACHE_KEY] = self._key()
    return super()._lookup(value, forward_name, inverse_name, **kwargs)

  def _attributes(self, value, fn_name, **kwargs):
    kwargs[_CACHE_KEY] = self._key()
    return super()._attributes(value, fn_name, **kwargs)

  def _invoke(self, value, fn_name, kwargs, attributes):
    kwargs = {k: v for k, v in kwargs.items() if k != _CACHE_KEY}
    return super()._invoke(value, fn_name, kwargs, attributes)


class BatchNorm(OwnVariables, OnePassBijector):
  """Real NVP's batch normalization `y = (x - mu~) / sqrt(sigma~^2 + eps)`.

  Per channel (the last axis; the channels of an image `[H, W, C]`, the
  entries of a vector `[D]`), data to latent:

      forward:  y = (x - mu~) / sqrt(sigma~^2 + eps)
      inverse:  x = y * sqrt(sigma~^2 + eps) + mu~
      log|det dy/dx| = -1/2 sum_c log(sigma~_c^2 + eps)      per position

  so with `event_ndims=3` TFP's reduction over the event gives
  `-H * W / 2 * sum_c log(sigma~_c^2 + eps)`. There is no learned scale or
  shift (the paper's form); the couplings around it provide them.

  Which statistics `mu~`, `sigma~^2` are depends on `tf_realnvp.training_mode`:

  - Evaluation (the default): the running averages `running_mean`,
    `running_variance` (non-trainable variables, initially 0 and 1). The
    bijector is a fixed affine map: each example's density depends on that
    example alone, `log_prob` is an exact density, and `forward` and
    `inverse` are exact inverses.
  - Training (inside `with training_mode.training():`), in the data-to-latent
    direction (`forward`, and `log_prob` of a flow built on
    `Invert(...)`): with the batch's mean `mu^` and (biased) variance
    `sigma^2` per channel, over every axis but the last (for images over
    N, H and W, for vectors over N),

        mu~      = rho * running_mean     + (1 - rho) * mu^
        sigma~^2 = rho * running_variance + (1 - rho) * sigma^2

    (Appendix E), with gradients through the batch's moments only; then
    `running_mean` and `running_variance` are assigned `mu~`, `sigma~^2`.
    The result for one example depends on the rest of the batch, so
    `log_prob` in training mode is a training objective, not a density.
    `forward(x)` and the log-det at `x` (or at its output) share one
    computation through TFP's cache, so a `log_prob` updates the averages
    once.

  `inverse` (latent to data, sampling) always uses the running averages and
  never updates them, in either mode. An empty batch (no example on any
  replica) has no statistics: in training mode it is transformed with the
  running averages and leaves them unchanged.

  The batch's moments are over the global batch: inside a `tf.distribute`
  replica context the per-replica sums of `x`, `x^2` and the count are
  all-reduced (one `SUM`), so every replica normalizes with, and assigns,
  the same statistics, equal to one device's on the whole batch. The sums are
  taken of `x - running_mean`, the same shift on every replica, which keeps
  `E[x^2] - E[x]^2` from cancelling once the averages are near the data.

  Defaults: `momentum=0.9`, `epsilon=1e-4`. Appendix E gives the update
  rule; these values are those of the authors' released code
  (tensorflow/models, `research/real_nvp/real_nvp_utils.py`): its running
  averages move by `decay=.1` per step (`rho = 0.9`), and its coupling
  layers normalize their outputs with `epsilon=1e-4`. (That code weights the
  batch in the normalization separately, by `bn_lag`, which is 0 by default:
  batch statistics alone.) A smaller `rho` leaves the initial (0, 1) sooner;
  a larger one lets less of each batch, and of its gradient, into the map.

  This is not `tfp.bijectors.BatchNormalization`: that one wraps a
  `tf_keras.layers.BatchNormalization` (Keras 2; by default with learned
  `gamma` and `beta`), normalizes in its `inverse`, fixes `training` when
  it is built, normalizes in training with the batch's own statistics
  rather than the paper's mixture with the running averages, and computes
  its training log-det from `tf.nn.moments` of the tensor it is given, that
  is per replica, not from synchronized moments.

  #### Examples

  ```python
  norm = BatchNorm(channels=3)
  with tf_realnvp.training_mode.training():
    z = norm.forward(x)   # x: [batch, 32, 32, 3]; mixed statistics, updated
  z = norm.forward(x)     # evaluation: the running averages
  ```

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017, Sec. 3.7 and Appendix E.
       https://arxiv.org/abs/1605.08803
  [2]: Sergey Ioffe, Christian Szegedy. Batch Normalization: Accelerating
       Deep Network Training by Reducing Internal Covariate Shift. ICML 2015.
       https://arxiv.org/abs/1502.03167
  """

  _cache = _CacheByStatistics(
      forward_name='_augmented_forward', inverse_name='_augmented_inverse')
  # Training calls of every instance: a copy's moves the running averages it
  # shares with the original, whose evaluation results it must invalidate.
  _training_calls = 0

  def __init__(self, channels, momentum=0.9, epsilon=1e-4, dtype=tf.float32,
               validate_args=False, name='batch_norm', variables=None):
    """Builds the bijector with running averages 0 and 1.

    Args:
      channels: size of the last axis of the events.
      momentum: `rho`, the weight of the running averages, in `[0, 1)`.
      epsilon: positive number added to the variance.
      dtype: float dtype of the running averages and of the inputs.
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
      variables: `{'running_mean', 'running_variance'}` of the bijector this
        one copies (what `copy()` passes); `None` creates new ones.
    """
    parameters = dict(locals())
    if not 0. <= momentum < 1.:
      raise ValueError(f'momentum must be in [0, 1), got {momentum}.')
    if not epsilon > 0.:
      raise ValueError(f'epsilon must be positive, got {epsilon}.')
    self._channels = int(channels)
    self._momentum = float(momentum)
    self._epsilon = float(epsilon)
    with tf.name_scope(name) as scope:
      # Every replica computes the same update (the moments are all-reduced),
      # so a mirrored variable may take the first replica's.
      running = dict(trainable=False,
                     synchronization=tf.VariableSynchronization.ON_WRITE,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      variables = self._own_variables(parameters, lambda: dict(
          running_mean=tf.Variable(tf.zeros([channels], dtype),
                                   name='running_mean', **running),
          running_variance=tf.Variable(tf.ones([channels], dtype),
                                       name='running_variance', **running)))
      self._running_mean = variables['running_mean']
      self._running_variance = variables['running_variance']
      super().__init__(
          forward_min_event_ndims=1,
          is_constant_jacobian=False,
          dtype=dtype,
          validate_args=validate_args,
          parameters=parameters,
          name=scope)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  @property
  def channels(self):
    return self._channels

  @property
  def momentum(self):
    return self._momentum

  @property
  def epsilon(self):
    return self._epsilon

  @property
  def running_mean(self):
    return self._running_mean

  @property
  def running_variance(self):
    return self._running_variance

  @property
  def statistics_version(self):
    """Python count of training calls of any `BatchNorm` so far (per trace
    inside a graph)."""
    return BatchNorm._training_calls

  def _check_channels(self, x):
    if x.shape[-1] is not None and x.shape[-1] != self._channels:
      raise ValueError(f'{self.name}: expected {self._channels} channels on '
                       f'the last axis, got shape {x.shape}.')

  def _batch_moments(self, x):
    """Per-channel mean and variance of `x` over all replicas' batches, and
    whether those hold any example."""
    shift = tf.stop_gradient(tf.convert_to_tensor(self._running_mean))
    centered = x - shift
    axes = ps.range(ps.rank(x) - 1)
    count = tf.cast(ps.size(x) // ps.shape(x)[-1], x.dtype)
    sums = tf.concat([tf.reduce_sum(centered, axes),
                      tf.reduce_sum(tf.square(centered), axes),
                      count[tf.newaxis]], axis=0)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
      sums = context.all_reduce(tf.distribute.ReduceOp.SUM, sums)
    total, total_square, count = tf.split(
        sums, [self._channels, self._channels, 1])
    # An empty global batch gives moments 0 (not 0/0), which
    # `_training_statistics` then ignores.
    centered_mean = tf.math.divide_no_nan(total, count)
    variance = tf.maximum(
        tf.math.divide_no_nan(total_square, count)
        - tf.square(centered_mean), 0.)
    return shift + centered_mean, variance, count > 0

  def _training_statistics(self, x):
    """The paper's mixture; assigns it to the running averages."""
    batch_mean, batch_variance, has_examples = self._batch_moments(x)
    rho = self._momentum
    running_mean = tf.stop_gradient(tf.convert_to_tensor(self._running_mean))
    running_variance = tf.stop_gradient(
        tf.convert_to_tensor(self._running_variance))
    mean = tf.where(has_examples,
                    rho * running_mean + (1. - rho) * batch_mean,
                    running_mean)
    variance = tf.where(has_examples,
                        rho * running_variance + (1. - rho) * batch_variance,
                        running_variance)
    self._running_mean.assign(tf.stop_gradient(mean))
    self._running_variance.assign(tf.stop_gradient(variance))
    BatchNorm._training_calls += 1
    return mean, variance

  def _log_scale(self, variance):
    """`1/2 sum_c log(sigma~_c^2 + eps)`, the inverse's log-det per position."""
    return 0.5 * tf.reduce_sum(tf.math.log(variance + self._epsilon))

  def _forward_and_log_det(self, x):
    self._check_channels(x)
    if training_mode.is_training():
      mean, variance = self._training_statistics(x)
    else:
      mean = tf.convert_to_tensor(self._running_mean)
      variance = tf.convert_to_tensor(self._running_variance)
    y = (x - mean) * tf.math.rsqrt(variance + self._epsilon)
    return y, -self._log_scale(variance)

  def _inverse_and_log_det(self, y):
    self._check_channels(y)
    variance = tf.convert_to_tensor(self._running_variance)
    x = y * tf.sqrt(variance + self._epsilon) + self._running_mean
    return x, self._log_scale(variance)
