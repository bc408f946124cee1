"""Properties of Glow's bijectors: ActNorm and the invertible 1x1 convolution."""

import functools

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import bijectors
from tf_realnvp import training_mode
from tf_realnvp.bijectors.actnorm import ActNorm
from tf_realnvp.bijectors.actnorm import VARIANCE_FLOOR
from tf_realnvp.bijectors.invertible_conv import InvertibleConv1x1

tfb = tfp.bijectors

def data(event_shape, batch=6, seed=0):
  """float64 events far from standard: mean 2, standard deviation 3."""
  rng = np.random.RandomState(seed)
  return tf.constant(rng.normal(2., 3., (batch,) + event_shape))


def standardized(x, stats_batch):
  """`x` standardized per channel with the statistics of `stats_batch`."""
  axes = tuple(range(stats_batch.ndim - 1))
  return ((np.asarray(x) - stats_batch.numpy().mean(axis=axes))
          / np.sqrt(stats_batch.numpy().var(axis=axes) + VARIANCE_FLOOR))


def initialized_actnorm(event_shape):
  actnorm = ActNorm(event_shape[-1], dtype=tf.float64)
  actnorm.initialize(data(event_shape, seed=5))
  return bijector_checks.perturb(actnorm)


def conv1x1(event_shape):
  return bijector_checks.perturb(
      InvertibleConv1x1(event_shape[-1], dtype=tf.float64))


def glow_step(event_shape):
  """ActNorm, 1x1 convolution and a channel coupling, data to latent."""
  mask = bijectors.channel_mask(*event_shape, parity=0)
  return tfb.Chain([bijector_checks.coupling(mask), conv1x1(event_shape),
                    initialized_actnorm(event_shape)])


class TestGlowBijectorProperties(bijector_checks.BijectorProperties):
  CASES = {
      f'{name}_{event}': bijector_checks.Case(
          functools.partial(make, shape), shape)
      for name, make in [('actnorm', initialized_actnorm),
                         ('conv1x1', conv1x1), ('glow_step', glow_step)]
      for event, shape in [('vector', (6,)), ('image', (3, 2, 4))]
      if not (name == 'glow_step' and event == 'vector')
  }


@pytest.mark.parametrize('event_shape', [(5,), (3, 2, 4)])
def test_actnorm_first_forward_standardizes_its_batch(event_shape):
  actnorm = ActNorm(event_shape[-1], dtype=tf.float64)
  assert not actnorm.initialized
  first = data(event_shape, batch=50)
  z = actnorm.forward(first).numpy()
  assert actnorm.initialized
  axes = tuple(range(z.ndim - 1))
  np.testing.assert_allclose(z.mean(axis=axes), 0., atol=1e-12)
  np.testing.assert_allclose(z.std(axis=axes), 1., rtol=1e-6)
  # Later batches are transformed with the first batch's statistics.
  second = data(event_shape, seed=9)
  np.testing.assert_allclose(actnorm.forward(second),
                             standardized(second, first), rtol=1e-12)


def test_actnorm_log_det_alone_initializes_and_sampling_does_not():
  actnorm = ActNorm(4, dtype=tf.float64)
  actnorm.inverse(data((4,)))
  actnorm.inverse_log_det_jacobian(data((4,)), event_ndims=1)
  assert not actnorm.initialized
  np.testing.assert_array_equal(actnorm.log_scale, 0.)
  x = data((4,), batch=50)
  fldj = actnorm.forward_log_det_jacobian(x, event_ndims=1)
  assert actnorm.initialized
  np.testing.assert_allclose(fldj, -np.log(x.numpy().std(axis=0)).sum(),
                             rtol=1e-6)


@pytest.mark.parametrize('jit_compile', [False, True])
def test_actnorm_initializes_once_inside_tf_function(jit_compile):
  actnorm = ActNorm(3, dtype=tf.float64)
  forward = tf.function(actnorm.forward, jit_compile=jit_compile)
  first, second = data((2, 2, 3), batch=20), data((2, 2, 3), seed=3)
  np.testing.assert_allclose(forward(first), standardized(first, first),
                             rtol=1e-12, atol=1e-12)
  assert actnorm.initialized
  np.testing.assert_allclose(forward(second), standardized(second, first),
                             rtol=1e-12)


def test_checkpoint_round_trip_keeps_the_initialization(tmp_path):
  actnorm = ActNorm(3, dtype=tf.float64)
  mixing = InvertibleConv1x1(3, seed=1, dtype=tf.float64)
  x = data((2, 2, 3))
  z = mixing.forward(actnorm.forward(x))
  path = tf.train.Checkpoint(actnorm=actnorm, mixing=mixing).write(
      str(tmp_path / 'ckpt'))
  fresh_actnorm = ActNorm(3, dtype=tf.float64)
  fresh_mixing = InvertibleConv1x1(3, seed=2, dtype=tf.float64)
  tf.train.Checkpoint(actnorm=fresh_actnorm, mixing=fresh_mixing).read(
      path).assert_consumed()
  assert fresh_actnorm.initialized
  # The restored ActNorm uses the saved statistics on a batch it has not seen.
  other = data((2, 2, 3), seed=4)
  np.testing.assert_allclose(fresh_actnorm.forward(other),
                             standardized(other, x), rtol=1e-12)
  np.testing.assert_allclose(
      fresh_mixing.forward(fresh_actnorm.forward(x)), z, rtol=1e-12)


def test_conv1x1_is_a_seeded_random_rotation_applied_at_every_pixel():
  mixing = InvertibleConv1x1(4, seed=3, dtype=tf.float64)
  weight = mixing.weight().numpy()
  np.testing.assert_allclose(weight @ weight.T, np.eye(4), atol=1e-12)
  assert not np.allclose(np.abs(weight), np.eye(4))
  np.testing.assert_array_equal(
      InvertibleConv1x1(4, seed=3, dtype=tf.float64).weight(), weight)
  assert not np.allclose(
      InvertibleConv1x1(4, seed=4, dtype=tf.float64).weight(), weight)
  bijector_checks.perturb(mixing)
  x = data((3, 2, 4))
  kernel = tf.transpose(mixing.weight())[tf.newaxis, tf.newaxis]
  np.testing.assert_allclose(
      mixing.forward(x), tf.nn.conv2d(x, kernel, 1, 'VALID'), rtol=1e-10)


def test_variables_are_the_glow_parameters():
  actnorm, mixing = ActNorm(6), InvertibleConv1x1(6)
  assert [v.shape for v in actnorm.trainable_variables] == [(6,), (6,)]
  assert len(actnorm.variables) == 3  # loc, log_scale, initialized
  assert [v.shape for v in mixing.trainable_variables] == [(6, 6)]
  assert len(mixing.variables) == 3  # lower_upper, permutation, signs


def test_wrong_channel_count_raises():
  with pytest.raises(ValueError, match='expected 3 channels'):
    ActNorm(3).forward(tf.zeros((2, 4, 4, 1)))


def test_actnorm_does_not_initialize_from_an_empty_batch():
  """An empty batch has no statistics: the first non-empty one initializes."""
  actnorm = ActNorm(3, dtype=tf.float64)
  empty = tf.zeros((0, 2, 2, 3), tf.float64)
  forward = tf.function(actnorm.forward, input_signature=[
      tf.TensorSpec((None, 2, 2, 3), tf.float64)])
  assert actnorm.forward(empty).shape == empty.shape
  assert forward(empty).shape == empty.shape
  assert not actnorm.initialized
  np.testing.assert_array_equal(actnorm.log_scale, 0.)
  x = data((2, 2, 3), batch=20)
  np.testing.assert_allclose(forward(x), standardized(x, x), rtol=1e-12,
                             atol=1e-12)
  assert actnorm.initialized


@pytest.mark.parametrize('make', [lambda: ActNorm(2),
                                  lambda: InvertibleConv1x1(2, seed=3)],
                         ids=['actnorm', 'invertible_conv'])
def test_two_instances_of_one_size_do_not_share_cached_results(make):
  """TFP keys its bijector cache by what `_get_parameterization` returns; with
  the constructor arguments there, `b.inverse(a.forward(x))` would return
  `x` from `a`'s cache although `b`'s variables differ."""
  a, b = make(), make()
  x = tf.constant(np.random.RandomState(0).normal(size=(4, 2)), tf.float32)
  a.forward(x)
  b.forward(x + 5.)  # ActNorm: initialized on other data.
  for variable in b.trainable_variables:
    variable.assign_add(tf.fill(variable.shape, 0.1))
  y = a.forward(x)
  np.testing.assert_allclose(b.inverse(y), b.inverse(tf.identity(y)),
                             rtol=1e-6)
  assert not np.allclose(b.inverse(y), x)


def test_frozen_traces_assign_nothing_and_solve_nothing():
  """In `training_mode.frozen()` (exports that store weights as constants)
  an uninitialized ActNorm computes with the values it holds, and the 1x1
  convolution decodes by a product with W^{-1}, no triangular solve: the
  same map as its solves, and no op that assigns or solves in the trace."""
  event_shape = (4, 4, 3)
  flow = tfb.Chain([conv1x1(event_shape), ActNorm(3, dtype=tf.float64)])
  x = data(event_shape)
  with training_mode.frozen():
    forward = tf.function(flow.forward).get_concrete_function(x)
    inverse = tf.function(flow.inverse).get_concrete_function(x)
  ops = {node.type for function in (forward, inverse)
         for node in function.graph.get_operations()}
  assert not ops & {'AssignVariableOp', 'MatrixTriangularSolve', 'If',
                    'StatelessIf'}, ops
  y = forward(x)
  np.testing.assert_allclose(y, flow.bijectors[0].forward(x), rtol=1e-12)
  assert not flow.bijectors[1].initialized.numpy()
  np.testing.assert_allclose(inverse(y), x, rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(inverse(x), flow.inverse(x), rtol=1e-9,
                             atol=1e-9)
