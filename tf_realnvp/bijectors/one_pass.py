"""A bijector base class whose transform and log-det come from one computation."""

import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util


class OnePassBijector(tfp.bijectors.Bijector):
  """Bijector that computes its output and log-det Jacobian together.

  A coupling layer evaluates its network once to get both `y = f(x)` and
  `log|det df/dx|`. TFP's default would call the network again for the log-det;
  here subclasses implement

      _forward_and_log_det(x, **kwargs) -> (y, fldj)
      _inverse_and_log_det(y, **kwargs) -> (x, ildj)

  and TFP's greedy bijector cache (the mechanism its `FFJORD` uses) stores the
  log-det next to the cached output, so `log_prob` runs each network once.
  `kwargs` is a conditional layer's `conditional_input`; the cache keys on
  it too.
  """

  _cache = cache_util.BijectorCacheWithGreedyAttrs(
      forward_name='_augmented_forward', inverse_name='_augmented_inverse')

  def _augmented_forward(self, x, **kwargs):
    y, fldj = self._forward_and_log_det(x, **kwargs)
    return y, {'fldj': fldj, 'ildj': -fldj}

  def _augmented_inverse(self, y, **kwargs):
    x, ildj = self._inverse_and_log_det(y, **kwargs)
    return x, {'ildj': ildj, 'fldj': -ildj}

  def _forward(self, x, **kwargs):
    return self._augmented_forward(x, **kwargs)[0]

  def _inverse(self, y, **kwargs):
    return self._augmented_inverse(y, **kwargs)[0]

  def _forward_log_det_jacobian(self, x, **kwargs):
    cached = self._cache.forward_attributes(x, **kwargs)
    if 'fldj' not in cached:
      cached.update(self._augmented_forward(x, **kwargs)[1])
    return cached['fldj']

  def _inverse_log_det_jacobian(self, y, **kwargs):
    cached = self._cache.inverse_attributes(y, **kwargs)
    if 'ildj' not in cached:
      cached.update(self._augmented_inverse(y, **kwargs)[1])
    return cached['ildj']

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}
