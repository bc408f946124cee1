"""The learned dequantization: a map of each pixel cell onto itself whose
log-det is `-log q(u | x)`, the identity until trained.

TFP's contract (bijective, autodiff log-det, shapes, copies, XLA, ...) is
checked in test_tfp_contract.py; here, what makes it a dequantization.
"""

import numpy as np
import pytest
import tensorflow as tf

import bijector_checks
import tf_realnvp
from tf_realnvp import bijectors
from tf_realnvp.flows.realnvp import noise_couplings

SHAPE = (2, 2, 1)


def dequantizer(perturbed=True, shape=SHAPE, dtype=tf.float64):
  layer = bijectors.VariationalDequantization(noise_couplings(shape, dtype))
  return bijector_checks.perturb(layer, scale=0.2) if perturbed else layer


def test_an_untrained_one_is_uniform_dequantization():
  layer = dequantizer(perturbed=False, dtype=tf.float32)
  v = tf.constant(np.random.RandomState(0).uniform(0., 256., (5,) + SHAPE),
                  tf.float32)
  np.testing.assert_allclose(layer.forward(v), v, rtol=0, atol=1e-4)
  np.testing.assert_allclose(layer.forward_log_det_jacobian(v, 3), 0.,
                             atol=1e-3)


@pytest.mark.parametrize('noise', [0., 1e-9, 0.3, 'top'])
def test_every_cell_maps_onto_itself_also_at_its_edges(noise):
  """`floor(y) = floor(v)` for pixels 0..255 and noise at the cell's edges
  (`top`: the largest float32 below `x + 1`), in float32 where `x + u`
  rounds; the log-det stays finite."""
  layer = dequantizer(shape=(2, 2, 3), dtype=tf.float32)
  pixels = np.arange(256, dtype=np.float32).reshape(-1, 2, 2, 1)
  pixels = np.repeat(pixels, 3, axis=-1)  # [64, 2, 2, 3], every level
  v = tf.constant(np.nextafter(pixels + 1, pixels) if noise == 'top'
                  else pixels + np.float32(noise))
  y = layer.forward(v)
  np.testing.assert_array_equal(np.floor(y), pixels)
  assert np.all(np.isfinite(layer.forward_log_det_jacobian(v, 3)))
  np.testing.assert_array_equal(np.floor(layer.inverse(y)), pixels)


def test_q_is_a_density_on_each_cell():
  """`q(u | x) = 1 / |du/dw|`, so `|du/dw|` integrates to 1 over the cell
  `[x, x + 1)^D` of every image `x`: the discrete likelihood of a flow that
  applies the map first is that of the flow after it, and its uniformly
  dequantized log-density is the variational bound."""
  layer = dequantizer()
  rng = np.random.RandomState(1)
  for image in rng.randint(0, 256, size=(2,) + SHAPE):
    w = rng.uniform(size=(50000,) + SHAPE)
    slopes = np.exp(layer.forward_log_det_jacobian(image + w, 3).numpy())
    assert slopes.std() > 0.05  # perturbed enough to be no longer uniform
    np.testing.assert_allclose(slopes.mean(), 1.,
                               atol=5 * slopes.std() / np.sqrt(len(w)))


def test_a_flow_with_it_has_the_variational_bound_as_its_log_prob():
  """`flow.log_prob(x + w) = log p(x + u) - log q(u | x)`, `p` the flow
  without the dequantization, `u` the map of `w`."""
  flow = bijector_checks.perturb(tf_realnvp.RealNVP(
      (4, 4, 3), num_scales=1, num_res_blocks=1, num_filters=4,
      dequantization='variational'))
  layer = flow.bijector.bijector.bijectors[-1]
  assert isinstance(layer, bijectors.VariationalDequantization)
  rest = tf_realnvp.flows.from_data_to_latent(
      list(reversed(flow.bijector.bijector.bijectors[:-1])), (4, 4, 3))
  v = tf.constant(np.random.RandomState(2).uniform(0., 256., (3, 4, 4, 3)),
                  tf.float32)
  u = layer.forward(v)
  np.testing.assert_allclose(
      flow.log_prob(v),
      rest.log_prob(u) + layer.forward_log_det_jacobian(v, 3), rtol=1e-5)
  assert np.all(np.abs(layer.forward_log_det_jacobian(v, 3)) > 1e-2)


def test_vectors_are_refused_in_one_line():
  with pytest.raises(ValueError, match='8-bit pixels.*continuous'):
    tf_realnvp.RealNVP((2,), dequantization='variational')
  with pytest.raises(ValueError, match="dequantization must be one of"):
    tf_realnvp.RealNVP((4, 4, 3), dequantization='learned')
