"""Squeeze: the documented permutation, zero log-det, shapes and errors."""

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import bijectors

tfb = tfp.bijectors


class TestSqueezeProperties(bijector_checks.BijectorProperties):
  CASES = {
      'squeeze': bijector_checks.Case(bijectors.Squeeze, (4, 6, 3),
                                      volume_preserving=True),
      'unsqueeze': bijector_checks.Case(
          lambda: tfb.Invert(bijectors.Squeeze()), (2, 3, 12),
          volume_preserving=True),
  }


def test_squeeze_follows_the_index_formula():
  """y[i, j, 4c + 2a + b] = x[2i + a, 2j + b, c] (the paper's Figure 3)."""
  x = np.random.RandomState(0).normal(size=(2, 1, 4, 6, 3))
  y = bijectors.Squeeze().forward(x).numpy()
  assert y.shape == (2, 1, 2, 3, 12)
  for i, j, c, a, b in np.ndindex(2, 3, 3, 2, 2):
    np.testing.assert_array_equal(y[..., i, j, 4 * c + 2 * a + b],
                                  x[..., 2 * i + a, 2 * j + b, c])


def test_squeeze_is_a_permutation():
  """Its Jacobian is a permutation matrix: one 1 in each row and column."""
  x = tf.random.stateless_normal((1, 4, 2, 2), [0, 1], dtype=tf.float64)
  jacobian = bijector_checks.flat_jacobian(bijectors.Squeeze(), x)[0]
  assert set(np.unique(jacobian)) == {0., 1.}
  np.testing.assert_array_equal(jacobian.sum(0), 1.)
  np.testing.assert_array_equal(jacobian.sum(1), 1.)
  assert bijectors.Squeeze().is_constant_jacobian
  np.testing.assert_array_equal(
      bijectors.Squeeze().forward_log_det_jacobian(x, event_ndims=3), 0.)


def test_event_shapes():
  squeeze = bijectors.Squeeze()
  assert squeeze.forward_event_shape([5, 4, 6, 3]) == [5, 2, 3, 12]
  assert squeeze.inverse_event_shape([2, 3, 12]) == [4, 6, 3]
  np.testing.assert_array_equal(
      squeeze.forward_event_shape_tensor([4, 6, 3]), [2, 3, 12])
  np.testing.assert_array_equal(
      squeeze.inverse_event_shape_tensor([2, 3, 12]), [4, 6, 3])


def test_odd_height_or_width_is_rejected():
  for shape in ((1, 3, 4, 2), (1, 4, 5, 2)):
    with pytest.raises(ValueError, match='even'):
      bijectors.Squeeze().forward(tf.zeros(shape))


def test_unsqueeze_needs_a_multiple_of_four_channels():
  with pytest.raises(ValueError, match='multiple of 4'):
    bijectors.Squeeze().inverse(tf.zeros((1, 2, 2, 6)))
  with pytest.raises(ValueError, match='multiple of 4'):
    bijectors.Squeeze().inverse_event_shape([2, 2, 6])
