"""Properties of the core library: bijectors, masks, the RealNVP distribution."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_realnvp
from tf_realnvp import bijectors
from tf_realnvp import networks

tfb = tfp.bijectors
tfd = tfp.distributions


def perturb(module, seed=0, scale=0.3):
  """Moves every weight away from the identity initialisation."""
  rng = np.random.RandomState(seed)
  for v in module.trainable_variables:
    v.assign(rng.normal(0., scale, v.shape).astype(v.dtype.as_numpy_dtype))
  return module


def coupling(mask, conditioner_class, dtype='float64', **kwargs):
  additive = kwargs.pop('additive', False)
  net = conditioner_class(mask.shape[-1], additive=additive, dtype=dtype,
                          **kwargs)
  return perturb(bijectors.AffineCoupling(mask, net, additive=additive))


def image_coupling(mask, **kwargs):
  return coupling(mask, networks.ResNetConditioner, num_blocks=1,
                  num_filters=4, **kwargs)


def vector_coupling(mask, **kwargs):
  return coupling(mask, networks.MLPConditioner, hidden_units=(8,), **kwargs)


BIJECTORS = {
    'checkerboard_even': lambda: image_coupling(
        bijectors.checkerboard_mask(4, 4, 2, 0)),
    'checkerboard_odd': lambda: image_coupling(
        bijectors.checkerboard_mask(4, 4, 2, 1)),
    'channel': lambda: image_coupling(bijectors.channel_mask(2, 2, 4, 1)),
    'vector': lambda: vector_coupling(bijectors.alternating_mask(5, 0)),
    'additive': lambda: vector_coupling(bijectors.alternating_mask(3, 1),
                                        additive=True),
    'squeeze': bijectors.Squeeze,
    'unsqueeze': lambda: tfb.Invert(bijectors.Squeeze()),
    'factor_out': lambda: bijectors.FactorOut(
        image_coupling(bijectors.checkerboard_mask(2, 2, 2, 0))),
    'logit': lambda: bijectors.LogitPreprocessing(dtype=tf.float64),
    'image_flow': lambda: perturb(tf_realnvp.RealNVP(
        (4, 4, 2), num_res_blocks=1, num_filters=4, dtype=tf.float64)).bijector,
    'vector_flow': lambda: perturb(tf_realnvp.RealNVP(
        (3,), num_coupling_layers=4, hidden_units=(8,),
        dtype=tf.float64)).bijector,
}
EVENT_SHAPES = {'checkerboard_even': (4, 4, 2), 'checkerboard_odd': (4, 4, 2),
                'channel': (2, 2, 4), 'vector': (5,), 'additive': (3,),
                'squeeze': (4, 4, 2), 'unsqueeze': (2, 2, 8),
                'factor_out': (2, 2, 4), 'logit': (3,),
                'image_flow': (4, 4, 2), 'vector_flow': (3,)}


def inputs(name, batch=3, seed=1):
  rng = np.random.RandomState(seed)
  shape = (batch,) + EVENT_SHAPES[name]
  if name == 'logit':
    return tf.constant(rng.uniform(1., 255., shape))
  return tf.constant(rng.normal(size=shape))


@pytest.mark.parametrize('name', sorted(BIJECTORS))
def test_inverse_undoes_forward(name):
  bijector = BIJECTORS[name]()
  x = inputs(name)
  y = bijector.forward(x)
  x_again = bijector.inverse(tf.identity(y))  # tf.identity: no cache hit
  np.testing.assert_allclose(x_again, x, rtol=1e-9, atol=1e-9)
  if y.shape == x.shape:
    assert not np.allclose(y, x)


@pytest.mark.parametrize('name', sorted(BIJECTORS))
def test_log_det_matches_autodiff_jacobian(name):
  bijector = BIJECTORS[name]()
  x = inputs(name, batch=2)
  ndims = len(EVENT_SHAPES[name])
  flat = tf.reshape(x, [2, -1])
  with tf.GradientTape() as tape:
    tape.watch(flat)
    y = bijector.forward(tf.reshape(flat, x.shape))
    y_flat = tf.reshape(y, [2, -1])
  jacobian = tape.batch_jacobian(y_flat, flat)
  _, expected = np.linalg.slogdet(jacobian.numpy())
  fldj = bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=ndims)
  np.testing.assert_allclose(np.broadcast_to(fldj, [2]), expected,
                             rtol=1e-7, atol=1e-8)
  ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=ndims)
  np.testing.assert_allclose(ildj, -np.broadcast_to(fldj, [2]), rtol=1e-9,
                             atol=1e-9)


def test_masks_follow_the_documented_patterns():
  board = bijectors.checkerboard_mask(3, 4, 2, parity=0)
  assert board.shape == (3, 4, 2)
  assert board[0, 0, 0] == 1 and board[0, 1, 1] == 0 and board[1, 1, 0] == 1
  np.testing.assert_array_equal(
      board + bijectors.checkerboard_mask(3, 4, 2, parity=1), 1)
  channels = bijectors.channel_mask(2, 2, 4, parity=0)
  np.testing.assert_array_equal(channels[1, 0], [1, 1, 0, 0])
  np.testing.assert_array_equal(bijectors.alternating_mask(2, 0), [1, 0])
  np.testing.assert_array_equal(bijectors.alternating_mask(2, 1), [0, 1])


def test_squeeze_moves_each_2x2_square_into_channels():
  x = np.random.RandomState(0).normal(size=(1, 4, 6, 3))
  y = bijectors.Squeeze().forward(x).numpy()
  assert y.shape == (1, 2, 3, 12)
  for i, j, c, a, b in np.ndindex(2, 3, 3, 2, 2):
    assert y[0, i, j, 4 * c + 2 * a + b] == x[0, 2 * i + a, 2 * j + b, c]


def test_log_prob_runs_each_network_once():
  flow = tf_realnvp.RealNVP((8, 8, 3), num_res_blocks=1, num_filters=4)
  layers = tf_realnvp.couplings(flow)
  calls = []
  for layer in layers:
    original = layer.conditioner.call
    layer.conditioner.call = lambda x, f=original: calls.append(1) or f(x)
  flow.log_prob(tf.random.uniform((2, 8, 8, 3), 0., 256.))
  assert len(calls) == len(layers) == 10


def test_2d_density_integrates_to_one_and_matches_samples():
  flow = perturb(tf_realnvp.RealNVP((2,), num_coupling_layers=4,
                                    hidden_units=(16,)), scale=0.2)
  axis = np.linspace(-10., 10., 801, dtype=np.float32)
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
  density = np.exp(flow.log_prob(grid).numpy())
  cell = (axis[1] - axis[0]) ** 2
  assert density.sum() * cell == pytest.approx(1., abs=1e-2)
  samples = flow.sample(20000, seed=tf.constant([3, 4])).numpy()
  inside = (grid[:, 0] < 0.) & (grid[:, 1] < 0.)
  mass = density[inside].sum() * cell
  share = np.mean((samples[:, 0] < 0.) & (samples[:, 1] < 0.))
  assert share == pytest.approx(mass, abs=4 * math.sqrt(0.25 / 20000) + 5e-3)


def test_bits_per_dim_of_uniform_density_is_eight():
  uniform = tfd.Sample(tfd.Uniform(0., 256.), (4, 4, 3))
  images = tf.cast(tf.random.uniform((5, 4, 4, 3), 0, 256, tf.int32), tf.uint8)
  np.testing.assert_allclose(
      tf_realnvp.bits_per_dim(uniform, images, seed=0), 8., rtol=1e-6)


def test_identity_flow_log_prob_matches_the_logit_formula():
  flow = tf_realnvp.RealNVP((4, 4, 3), num_res_blocks=1, num_filters=4,
                            dtype=tf.float64)
  x = np.random.RandomState(0).uniform(0., 256., (3, 4, 4, 3))
  alpha = 0.05
  p = alpha + (1 - 2 * alpha) * x / 256.
  z = np.log(p) - np.log1p(-p)
  log_det = np.log((1 - 2 * alpha) / 256.) - np.log(p) - np.log1p(-p)
  expected = np.sum(-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi) + log_det,
                    axis=(1, 2, 3))
  np.testing.assert_allclose(flow.log_prob(x), expected, rtol=1e-10)


def test_trainable_variables_count_every_weight_once():
  flow = tf_realnvp.RealNVP((32, 32, 3))
  layers = tf_realnvp.couplings(flow)
  assert len(layers) == 10
  assert len(flow.trainable_variables) == sum(
      len(layer.conditioner.trainable_weights) for layer in layers)
  count = sum(int(np.prod(v.shape)) for v in flow.trainable_variables)
  assert count == sum(layer.conditioner.count_params() for layer in layers)
  assert count == 13_167_641


def test_checkpoint_round_trip_saves_each_weight_once(tmp_path):
  flow = perturb(tf_realnvp.RealNVP((8, 8, 3), num_res_blocks=1,
                                    num_filters=4))
  path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / 'ckpt'))
  saved = [n for n, _ in tf.train.list_variables(path)
           if n != '_CHECKPOINTABLE_OBJECT_GRAPH']
  assert len(saved) == len(flow.variables)
  fresh = tf_realnvp.RealNVP((8, 8, 3), num_res_blocks=1, num_filters=4)
  tf.train.Checkpoint(flow=fresh).read(path).assert_existing_objects_matched()
  x = tf.random.uniform((2, 8, 8, 3), 0., 256.)
  np.testing.assert_allclose(fresh.log_prob(x), flow.log_prob(x), rtol=1e-6)


def test_tfp_minimize_lowers_the_nll():
  rng = np.random.RandomState(0)
  angle = rng.uniform(0, np.pi, 512)
  data = np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)
  data += rng.normal(0., 0.05, data.shape).astype(np.float32)
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=4, hidden_units=(32,))
  loss = lambda: -tf.reduce_mean(flow.log_prob(data))
  before = float(loss())
  tfp.math.minimize(loss, num_steps=300, optimizer=tf.optimizers.Adam(1e-2),
                    trainable_variables=flow.trainable_variables)
  assert float(loss()) < before - 1.


@pytest.mark.parametrize('event_shape', [(8, 8, 3), (2,)])
def test_xla_log_prob_equals_eager(event_shape):
  flow = perturb(tf_realnvp.RealNVP(event_shape, num_res_blocks=1,
                                    num_filters=4, hidden_units=(8,)),
                 scale=0.1)
  low, high = (0., 256.) if len(event_shape) == 3 else (-2., 2.)
  x = tf.random.uniform((4,) + event_shape, low, high)
  compiled = tf.function(flow.log_prob, jit_compile=True)
  np.testing.assert_allclose(compiled(x), flow.log_prob(x), rtol=1e-5)


def test_mixed_precision_keeps_float32_log_det_and_inverts():
  flow = perturb(tf_realnvp.RealNVP(
      (8, 8, 3), num_res_blocks=1, num_filters=4,
      network_dtype='mixed_bfloat16'), scale=0.1)
  x = tf.random.uniform((2, 8, 8, 3), 1., 255.)
  assert flow.log_prob(x).dtype == tf.float32
  z = flow.bijector.inverse(x)
  np.testing.assert_allclose(flow.bijector.forward(tf.identity(z)), x,
                             rtol=1e-3, atol=1e-2)
  assert np.all(np.isfinite(flow.sample(2, seed=tf.constant([0, 1]))))


@pytest.mark.parametrize('event_shape, num_scales, message', [
    ((30, 32, 3), 3, 'divisible by 4'),
    ((4, 4, 3), 3, 'too small'),
    ((8, 8, 0), 2, 'at least one channel'),
    ((4, 4), 2, 'rank 2'),
    ((2, 2, 2, 2), 2, 'rank 4'),
    ((1,), 2, 'at least 2'),
])
def test_bad_event_shapes_raise(event_shape, num_scales, message):
  with pytest.raises(ValueError, match=message):
    tf_realnvp.RealNVP(event_shape, num_scales=num_scales)


def test_bad_settings_and_inputs_raise():
  with pytest.raises(TypeError, match='floating'):
    tf_realnvp.RealNVP((2,), dtype=tf.int32)
  with pytest.raises(ValueError, match='coupling'):
    tf_realnvp.RealNVP((2,), coupling='spline')
  flow = tf_realnvp.RealNVP((8, 8, 3), num_res_blocks=1, num_filters=4)
  with pytest.raises(ValueError, match=r'\(8, 8, 3\)'):
    flow.log_prob(tf.zeros((2, 7, 8, 3)))
  for bad in (-20., 300., np.nan):
    with pytest.raises(tf.errors.InvalidArgumentError, match='intensities'):
      flow.log_prob(tf.fill((1, 8, 8, 3), bad))
  with pytest.raises(TypeError, match='uint8'):
    tf_realnvp.bits_per_dim(flow, tf.zeros((1, 8, 8, 3)), seed=0)


def test_valid_extremes_give_finite_values():
  flow = perturb(tf_realnvp.RealNVP((4, 4, 3), num_res_blocks=1,
                                    num_filters=4), scale=0.1)
  x = tf.constant(np.resize([0., 255.999, 256.], (3, 4, 4, 3)), tf.float32)
  assert np.all(np.isfinite(flow.log_prob(x)))
  assert np.all(np.isfinite(flow.sample(4, seed=tf.constant([1, 1]))))


def test_dequantized_pixels_stay_in_their_bin_and_follow_the_seed():
  images = tf.fill((1024, 32, 32, 3), tf.constant(255, tf.uint8))
  x = tf_realnvp.dequantize(images, seed=7).numpy()
  assert x.min() >= 255. and x.max() < 256.
  tf.random.set_seed(123)  # the global seed must not matter
  np.testing.assert_array_equal(tf_realnvp.dequantize(images, seed=7), x)
  assert not np.array_equal(tf_realnvp.dequantize(images, seed=8), x)


def test_mixed_precision_log_prob_agrees_with_float32():
  flows = [tf_realnvp.RealNVP((8, 8, 3), num_res_blocks=1, num_filters=8,
                              network_dtype=policy)
           for policy in (None, 'mixed_bfloat16')]
  rng = np.random.RandomState(0)
  for full, mixed in zip(flows[0].trainable_variables,
                         flows[1].trainable_variables):
    value = rng.normal(0., 0.1, full.shape).astype(np.float32)
    full.assign(value)
    mixed.assign(value)
  x = tf.random.uniform((4, 8, 8, 3), 0., 256.)
  bits = [tf_realnvp.bits_per_dim(flow, tf.cast(x, tf.uint8), seed=0)
          for flow in flows]
  np.testing.assert_allclose(bits[1], bits[0], atol=1e-3)
