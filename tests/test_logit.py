"""LogitPreprocessing: the blog's eq. 15-16, its support and its checks."""

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp import bijectors


class TestLogitProperties(bijector_checks.BijectorProperties):
  CASES = {
      'pixels': bijector_checks.Case(
          lambda: bijectors.LogitPreprocessing(dtype=tf.float64), (4, 4, 3),
          support=(0., 256.)),
      'two_levels_alpha_0.2': bijector_checks.Case(
          lambda: bijectors.LogitPreprocessing(
              alpha=0.2, num_levels=2, dtype=tf.float64), (5,),
          support=(0., 2.)),
  }


def test_forward_and_log_det_follow_the_formula():
  """z = logit(p), p = a + (1-2a) x/L; log|dz/dx| = log((1-2a)/L p (1-p))."""
  alpha, levels = 0.05, 256.
  x = np.random.RandomState(0).uniform(0., levels, (3, 7))
  logit = bijectors.LogitPreprocessing(alpha=alpha, dtype=tf.float64)
  p = alpha + (1. - 2. * alpha) * x / levels
  np.testing.assert_allclose(logit.forward(x), np.log(p / (1. - p)),
                             rtol=1e-12)
  np.testing.assert_allclose(
      logit.forward_log_det_jacobian(x, event_ndims=0),
      np.log((1. - 2. * alpha) / levels) - np.log(p) - np.log1p(-p),
      rtol=1e-12)


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_the_whole_pixel_range_and_every_latent_are_finite(dtype):
  """[0, 256] maps to finite logits; any latent maps back inside the support."""
  logit = bijectors.LogitPreprocessing(dtype=dtype, validate_args=True)
  edges = tf.constant([0., 1e-6, 128., 255.999, 256.], dtype)
  assert np.all(np.isfinite(logit.forward(edges)))
  assert np.all(np.isfinite(
      logit.forward_log_det_jacobian(edges, event_ndims=0)))
  x = logit.inverse(tf.constant([-15., 0., 15.], dtype))
  assert x.dtype == dtype
  low, high = -256 * 0.05 / 0.9, 256 * 0.95 / 0.9  # -La/(1-2a), L(1-a)/(1-2a)
  assert np.all((low < x) & (x < high))
  assert np.all(np.isfinite(logit.forward(tf.identity(x))))


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_inverse_log_det_is_exact_for_every_latent(dtype):
  """log|dx/dz| = log(L/(1-2a)) - softplus(-z) - softplus(z), from z alone:
  also where float32 rounds x onto the support's edge (|z| >= 17), which
  the check of x would refuse."""
  logit = bijectors.LogitPreprocessing(dtype=dtype, validate_args=True)
  z = np.array([-30., -20., -5., 0., 5., 20., 30.])
  ildj = logit.inverse_log_det_jacobian(tf.constant(z, dtype), event_ndims=0)
  softplus = np.logaddexp(0., z)
  np.testing.assert_allclose(
      ildj, np.log(256. / 0.9) - softplus - (softplus - z), rtol=1e-6)


@pytest.mark.parametrize('value', [-14.3, 270.3, -300., np.inf, np.nan])
def test_values_outside_the_support_are_rejected(value):
  """With validate_args, inputs outside (-14.22, 270.22) or NaN raise.

  The support is wider than [0, 256]: a flow's samples come back from all of
  it, and their log_prob must still be computable.
  """
  logit = bijectors.LogitPreprocessing(validate_args=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match='intensities'):
    logit.forward(tf.constant([10., value]))
  with pytest.raises(tf.errors.InvalidArgumentError, match='intensities'):
    logit.forward_log_det_jacobian(tf.constant([10., value]), event_ndims=1)


@pytest.mark.parametrize('kwargs, message', [
    (dict(alpha=0.), 'alpha'), (dict(alpha=0.5), 'alpha'),
    (dict(num_levels=0), 'num_levels'),
])
def test_bad_settings_are_rejected(kwargs, message):
  with pytest.raises(ValueError, match=message):
    bijectors.LogitPreprocessing(**kwargs)
