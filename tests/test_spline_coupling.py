"""SplineCoupling: bijector properties for every mask, inside and outside the
spline's interval; the identity at initialization; the neural spline flow."""

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_realnvp
from tf_realnvp import bijectors
from tf_realnvp import networks

MASKS = {
    'checkerboard_even': bijectors.checkerboard_mask(4, 4, 2, parity=0),
    'channel_second_half': bijectors.channel_mask(2, 2, 4, parity=1),
    'vector_5d': bijectors.alternating_mask(5, parity=0),
    'vector_2d': bijectors.alternating_mask(2, parity=1),
}
# Inputs uniform on [-3, 3] and splines on [-2.5, 2.5]: some entries lie on
# the identity tails (but not every transformed entry of a 2-D event, whose
# log-det would then be 0).
SPLINE = dict(bins=5, bound=2.5)


def spline(mask, support=(-3., 3.)):
  return bijector_checks.Case(
      lambda: bijector_checks.coupling(mask, spline=SPLINE), mask.shape,
      support=support)


class TestSplineCouplingProperties(bijector_checks.BijectorProperties):
  CASES = {name: spline(mask) for name, mask in MASKS.items()
           if name != 'vector_2d'}
  CASES['vector_2d'] = spline(MASKS['vector_2d'], support=(-2., 2.))


def test_kept_entries_and_the_tails_pass_unchanged():
  """`b*x` passes; a transformed entry outside `[-B, B]` too, with log g' = 0;
  one inside moves."""
  layer = bijector_checks.coupling(MASKS['vector_2d'], spline=SPLINE)
  x = tf.constant([[2.5, 1.], [-2.5, -1.], [0.5, 1.5]], tf.float64)
  y = layer.forward(x).numpy()
  np.testing.assert_array_equal(y[:, 1], x[:, 1])   # kept (mask [0, 1])
  np.testing.assert_array_equal(y[:2, 0], x[:2, 0])
  np.testing.assert_array_equal(
      layer.forward_log_det_jacobian(x[:2], event_ndims=1), 0.)
  assert abs(y[2, 0] - 0.5) > 1e-3


@pytest.mark.parametrize('name', ['checkerboard_even', 'vector_5d'])
def test_fresh_coupling_is_the_identity(name):
  """A zero head gives equal bins and unit slopes: y = x, log-det 0."""
  mask = MASKS[name]
  net = (networks.ResNetConditioner(mask.shape[-1], num_blocks=1,
                                    num_filters=4, spline_bins=4)
         if mask.ndim == 3 else
         networks.MLPConditioner(mask.shape[-1], hidden_units=(8,),
                                 spline_bins=4))
  layer = bijectors.SplineCoupling(mask, net, bins=4, bound=3.)
  x = tf.random.stateless_normal((3,) + mask.shape, [0, 2]) * 2.
  np.testing.assert_allclose(layer.forward(x), x, atol=1e-5)
  np.testing.assert_allclose(
      layer.forward_log_det_jacobian(x, event_ndims=mask.ndim), 0.,
      atol=1e-5)


def test_settings_are_checked():
  net = networks.MLPConditioner(2, hidden_units=(4,), spline_bins=4)
  mask = MASKS['vector_2d']
  with pytest.raises(ValueError, match='bins must be an integer >= 2'):
    bijectors.SplineCoupling(mask, net, bins=1)
  with pytest.raises(ValueError, match='bound must be positive'):
    bijectors.SplineCoupling(mask, net, bins=4, bound=0.)
  with pytest.raises(ValueError, match='additive or for a spline'):
    networks.MLPConditioner(2, additive=True, spline_bins=4)
  with pytest.raises(ValueError, match='spline_bins=4.*has 8 bins'):
    bijectors.SplineCoupling(mask, net, bins=8)

  class Raw(tf.Module):
    def __call__(self, x):
      return (tf.zeros(x.shape + (11,)),)

  layer = bijectors.SplineCoupling(mask, Raw(), bins=8)
  with pytest.raises(ValueError, match='needs 23 parameters per entry.*11'):
    layer.forward(tf.zeros((1, 2)))


def test_neural_spline_flow_is_a_density():
  """`make_flow('nsf')` on 2-D: a density that integrates to 1 over a grid
  (perturbed weights, so not the base Normal) and samples it inverts."""
  flow = tf_realnvp.make_flow('nsf', (2,), num_layers=2, hidden_units=(8,),
                              spline_bins=4, spline_bound=3.)
  bijector_checks.perturb(flow, scale=0.2)
  assert flow.name == 'nsf'
  assert len(tf_realnvp.couplings(flow)) == 2
  step = 0.05
  grid = np.arange(-9., 9., step) + step / 2
  points = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
  density = np.exp(flow.log_prob(points.astype(np.float32)).numpy())
  np.testing.assert_allclose(density.sum() * step ** 2, 1., atol=1e-3)
  base = tf.exp(flow.distribution.log_prob(points.astype(np.float32)))
  assert np.abs(density - base.numpy()).max() > 1e-2
  x = flow.sample(5, seed=1)
  z = flow.bijector.inverse(tf.identity(x))
  np.testing.assert_allclose(flow.bijector.forward(tf.identity(z)), x,
                             atol=1e-5)


def test_the_spline_equals_tfps_rational_quadratic_spline():
  """`g`, `g^-1` and both log-derivatives against
  `tfb.RationalQuadraticSpline` on the same knots, inside and outside the
  interval (TFP computes the same function its own way)."""
  layer = bijector_checks.coupling(MASKS['vector_5d'], spline=SPLINE)
  rng = np.random.RandomState(0)
  kept = tf.constant(rng.normal(size=(64, 5)), tf.float64)
  xs, ys, ds = layer._knots(kept, tf.float64, None)
  tfp_spline = tfp.bijectors.RationalQuadraticSpline(
      xs[..., 1:] - xs[..., :-1], ys[..., 1:] - ys[..., :-1], ds[..., 1:-1],
      range_min=-SPLINE['bound'])
  x = tf.constant(rng.uniform(-3., 3., size=(64, 5)), tf.float64)
  y, forward_log_det = layer._spline(x, (xs, ys, ds), inverse=False)
  np.testing.assert_allclose(y, tfp_spline.forward(x), rtol=1e-10)
  np.testing.assert_allclose(
      forward_log_det, tfp_spline.forward_log_det_jacobian(x, 0), atol=1e-10)
  x_again, inverse_log_det = layer._spline(y, (xs, ys, ds), inverse=True)
  np.testing.assert_allclose(x_again, tfp_spline.inverse(y), rtol=1e-9)
  np.testing.assert_allclose(x_again, x, rtol=1e-9)
  np.testing.assert_allclose(
      inverse_log_det, tfp_spline.inverse_log_det_jacobian(y, 0), atol=1e-9)
  assert np.abs(forward_log_det).max() > 0.1


def test_an_image_flow_of_spline_couplings_samples_what_it_scores():
  """`RealNVP(coupling='spline')` on images: the multi-scale architecture
  with spline couplings; `log_prob` of its own samples is finite and
  decode(encode(x)) = x."""
  flow = tf_realnvp.RealNVP((8, 8, 3), coupling='spline', num_scales=2,
                            num_res_blocks=1, num_filters=4, spline_bins=4)
  bijector_checks.perturb(flow, scale=0.05)
  assert flow.name == 'nsf' and len(tf_realnvp.couplings(flow)) == 10
  x = flow.sample(2, seed=3)
  assert np.all(np.isfinite(flow.log_prob(x)))
  z = flow.bijector.inverse(tf.identity(x))
  np.testing.assert_allclose(flow.bijector.forward(tf.identity(z)), x,
                             rtol=1e-4, atol=1e-2)
