"""A bijector base class whose transform and log-det come from one computation."""

import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util


class OnePassBijector(tfp.bijectors.Bijector):
  """Bijector that computes its output and log-det Jacobian together.

  A coupling layer evaluates its network once to get both `y = f(x)` and
  `log|det df/dx|`. TFP's default would call the network again for the log-det;
  here subclasses implement

      _forward_and_log_det(x) -> (y, fldj)
      _inverse_and_log_det(y) -> (x, ildj)

  and TFP's greedy bijector cache (the mechanism its `FFJORD` uses) stores the
  log-det next to the cached output, so `log_prob` runs each network once.
  """

  _cache = cache_util.BijectorCacheWithGreedyAttrs(
      forward_name='_augmented_forward', inverse_name='_augmented_inverse')

  def _augmented_forward(self, x):
    y, fldj = self._forward_and_log_det(x)
    return y, {'fldj': fldj, 'ildj': -fldj}

  def _augmented_inverse(self, y):
    x, ildj = self._inverse_and_log_det(y)
    return x, {'ildj': ildj, 'fldj': -ildj}

  def _forward(self, x):
    return self._augmented_forward(x)[0]

  def _inverse(self, y):
    return self._augmented_inverse(y)[0]

  def _forward_log_det_jacobian(self, x):
    cached = self._cache.forward_attributes(x)
    if 'fldj' not in cached:
      cached.update(self._augmented_forward(x)[1])
    return cached['fldj']

  def _inverse_log_det_jacobian(self, y):
    cached = self._cache.inverse_attributes(y)
    if 'ildj' not in cached:
      cached.update(self._augmented_inverse(y)[1])
    return cached['ildj']

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}
