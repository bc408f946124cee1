"""Logit preprocessing of pixel intensities (Dinh et al., 2017, Sec. 4.1)."""

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors


class LogitPreprocessing(tfb.Bijector):
  """Maps intensities in `[0, L]` to the real line: `logit(a + (1-2a) x / L)`.

  With `L = num_levels` (256 for 8-bit data) and `a = alpha` (0.05 in the
  paper), for each dimension independently:

      forward:  z = logit(p),  p = a + (1 - 2a) x / L
      inverse:  x = L (sigmoid(z) - a) / (1 - 2a)
      log|dz/dx| = log((1 - 2a) / L) - log(p) - log(1 - p)
      log|dx/dz| = log(L / (1 - 2a)) - softplus(-z) - softplus(z)

  (blog post, eq. 15-16). `alpha` keeps `p` away from 0 and 1, where the
  logit diverges. Each log-det is computed from its own direction's input,
  so the inverse's is finite for every real `z`, also where float32 rounds
  `x` onto the edge of the support (`|z|` of 17 and more), which samples of
  a flow can reach. Applied to dequantized pixels `x = k + u`,
  `u ~ U[0, 1)`, the flow's density is over `[0, L)^D` in pixel units, so
  `-log p(x) / (D ln 2)` is bits/dim of the discrete data.

  The computation is TFP's `Sigmoid(low, high)` run backwards, with
  `low = -L a / (1 - 2a)` and `high = L (1 - a) / (1 - 2a)`; this class adds
  the check (with `validate_args`) that `x` lies in `(low, high)`, the
  support, where the logit is defined: it contains `[0, L]`, and samples of a
  flow come back from all of it (clip them to `[0, L)` for display).

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  """

  def __init__(self, alpha=0.05, num_levels=256, dtype=tf.float32,
               validate_args=False, name='logit_preprocessing'):
    parameters = dict(locals())
    if not 0. < alpha < 0.5:
      raise ValueError(f'alpha must lie in (0, 0.5), got {alpha}.')
    if num_levels <= 0:
      raise ValueError(f'num_levels must be positive, got {num_levels}.')
    self._alpha = alpha
    self._num_levels = num_levels
    span = num_levels / (1. - 2. * alpha)
    with tf.name_scope(name) as name:
      self._sigmoid = tfb.Sigmoid(
          low=tf.constant(-alpha * span, dtype),
          high=tf.constant((1. - alpha) * span, dtype))
      super().__init__(
          forward_min_event_ndims=0,
          dtype=dtype,
          validate_args=validate_args,
          parameters=parameters,
          name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  @property
  def alpha(self):
    return self._alpha

  @property
  def num_levels(self):
    return self._num_levels

  def _is_increasing(self):
    return True

  def _forward(self, x):
    with tf.control_dependencies(self._assert_in_range(x)):
      return self._sigmoid.inverse(x)

  def _inverse(self, z):
    return self._sigmoid.forward(z)

  def _forward_log_det_jacobian(self, x):
    with tf.control_dependencies(self._assert_in_range(x)):
      return self._sigmoid.inverse_log_det_jacobian(x, event_ndims=0)

  def _inverse_log_det_jacobian(self, z):
    return self._sigmoid.forward_log_det_jacobian(z, event_ndims=0)

  def _assert_in_range(self, x):
    """Checks `x` lies in the support `(low, high)`, where the logit is defined.

    The support, `(-L a / (1 - 2a), L (1 - a) / (1 - 2a))`, contains `[0, L]`
    and all of the flow's samples; NaN fails the check too.
    """
    if not self.validate_args:
      return []
    low, high = self._sigmoid.low, self._sigmoid.high
    message = (f'{self.name}: pixel intensities must lie in the support '
               f'({float(low):.4g}, {float(high):.4g}), which contains '
               f'[0, {self._num_levels}]; NaN is rejected too')
    return [tf.debugging.assert_greater(x, tf.cast(low, x.dtype), message),
            tf.debugging.assert_less(x, tf.cast(high, x.dtype), message)]
