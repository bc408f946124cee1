"""FactorOut: half goes to the latent, the inner bijector maps the rest."""

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import bijectors

tfb = tfp.bijectors


def factor_out_coupling(mask):
  return bijectors.FactorOut(bijector_checks.coupling(mask))


class TestFactorOutProperties(bijector_checks.BijectorProperties):
  CASES = {
      'image_coupling': bijector_checks.Case(
          lambda: factor_out_coupling(bijectors.checkerboard_mask(2, 2, 2, 0)),
          (2, 2, 4)),
      'vector_coupling': bijector_checks.Case(
          lambda: factor_out_coupling(bijectors.alternating_mask(3, 1)), (6,)),
      # An elementwise inner bijector: FactorOut sums its log-det over the
      # event (forward_min_event_ndims 1 here, 3 for the event).
      'image_exp': bijector_checks.Case(
          lambda: bijectors.FactorOut(tfb.Exp()), (2, 2, 4)),
  }


def test_first_half_passes_unchanged_and_the_inner_bijector_gets_the_rest():
  inner = bijector_checks.coupling(bijectors.checkerboard_mask(2, 2, 3, 0))
  factor_out = bijectors.FactorOut(inner)
  x = tf.random.stateless_normal((3, 2, 2, 6), [0, 2], dtype=tf.float64)
  y = factor_out.forward(x)
  np.testing.assert_array_equal(y[..., :3], x[..., :3])
  np.testing.assert_allclose(y[..., 3:], inner.forward(x[..., 3:]),
                             rtol=1e-12)
  np.testing.assert_allclose(
      factor_out.forward_log_det_jacobian(x, event_ndims=3),
      inner.forward_log_det_jacobian(x[..., 3:], event_ndims=3), rtol=1e-12)


def test_inner_network_runs_once_for_output_and_log_det():
  inner = bijector_checks.coupling(bijectors.alternating_mask(2, 0))
  calls = bijector_checks.record_conditioner_calls([inner])
  factor_out = bijectors.FactorOut(inner)
  x = tf.random.stateless_normal((3, 4), [0, 3], dtype=tf.float64)
  factor_out.forward(x)
  factor_out.forward_log_det_jacobian(x, event_ndims=1)
  assert len(calls) == 1


def test_odd_channel_count_is_rejected():
  with pytest.raises(ValueError, match='even size'):
    bijectors.FactorOut(tfb.Exp()).forward(tf.zeros((1, 2, 2, 3)))
