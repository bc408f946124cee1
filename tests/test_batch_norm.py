"""Properties of Real NVP's batch normalization bijector in both modes."""

import contextlib
import functools

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import bijectors
from tf_realnvp import training_mode
from tf_realnvp.bijectors.batch_norm import BatchNorm

tfb = tfp.bijectors
tfd = tfp.distributions

IMAGE, VECTOR = (3, 2, 4), (5,)
EVENTS = ['vector', 'image']


def data(event_shape, batch=6, seed=0):
  """float64 events far from standard: mean 2, standard deviation 3."""
  rng = np.random.RandomState(seed)
  return tf.constant(rng.normal(2., 3., (batch,) + event_shape))


def running_averages(channels, seed=7):
  """Non-trivial running mean and variance for `channels` channels."""
  rng = np.random.RandomState(seed)
  return rng.normal(1., 2., channels), rng.uniform(0.3, 4., channels)


def batch_norm(event_shape, seed=7, **kwargs):
  """A float64 BatchNorm whose running averages are far from 0 and 1."""
  norm = BatchNorm(event_shape[-1], dtype=tf.float64, **kwargs)
  mean, variance = running_averages(event_shape[-1], seed)
  norm.running_mean.assign(mean)
  norm.running_variance.assign(variance)
  return norm


def mixed_statistics(norm, x):
  """The paper's training statistics, in NumPy, before `norm` sees `x`."""
  x = np.asarray(x)
  axes = tuple(range(x.ndim - 1))
  rho = norm.momentum
  return (rho * norm.running_mean.numpy() + (1 - rho) * x.mean(axis=axes),
          rho * norm.running_variance.numpy() + (1 - rho) * x.var(axis=axes))


def normalized(x, mean, variance, epsilon):
  """`(x - mean) / sqrt(variance + epsilon)` and its log-det per event."""
  x = np.asarray(x)
  positions = x[0].size // x.shape[-1]
  return ((x - mean) / np.sqrt(variance + epsilon),
          -0.5 * positions * np.sum(np.log(variance + epsilon)))


def flow(norm, event_shape):
  """A standard Normal latent; `norm` maps data to it."""
  return tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(tf.constant(0., tf.float64), 1.), event_shape),
      tfb.Invert(norm))


class TestBatchNormProperties(bijector_checks.BijectorProperties):
  """Evaluation mode: a fixed per-channel affine map."""
  CASES = {
      f'evaluation_{event}': bijector_checks.Case(
          functools.partial(batch_norm, shape), shape)
      for event, shape in [('vector', (6,)), ('image', IMAGE)]
  }


@pytest.mark.parametrize('event_shape', [VECTOR, IMAGE], ids=EVENTS)
def test_training_forward_normalizes_with_the_mixed_statistics(event_shape):
  """y and the log-det use rho * running + (1 - rho) * batch moments, where
  the batch moments are over every axis but the last (N, H, W for images)."""
  norm = batch_norm(event_shape)
  x = data(event_shape)
  mean, variance = mixed_statistics(norm, x)
  with training_mode.training():
    y = norm.forward(x)
    fldj = norm.forward_log_det_jacobian(x, event_ndims=len(event_shape))
  expected_y, expected_fldj = normalized(x, mean, variance, norm.epsilon)
  np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(fldj, expected_fldj, rtol=1e-12)
  # Not the running averages alone: the batch moves the result.
  eval_y, eval_fldj = normalized(x, *running_averages(event_shape[-1]),
                                 norm.epsilon)
  assert not np.allclose(y, eval_y, rtol=1e-3)
  assert not np.isclose(fldj, eval_fldj, rtol=1e-3)
  # The map each example went through, with the batch's statistics held:
  # the log-det is its autodiff Jacobian's.
  held = BatchNorm(event_shape[-1], dtype=tf.float64)
  held.running_mean.assign(mean)
  held.running_variance.assign(variance)
  _, autodiff = np.linalg.slogdet(bijector_checks.flat_jacobian(held, x))
  np.testing.assert_allclose(autodiff, expected_fldj, rtol=1e-10)


@pytest.mark.parametrize('event_shape', [VECTOR, IMAGE], ids=EVENTS)
def test_training_forward_moves_running_averages_to_the_mixture(event_shape):
  norm = batch_norm(event_shape)
  x = data(event_shape)
  mean, variance = mixed_statistics(norm, x)
  with training_mode.training():
    norm.forward(x)
  np.testing.assert_allclose(norm.running_mean, mean, rtol=1e-12)
  np.testing.assert_allclose(norm.running_variance, variance, rtol=1e-12)


def test_training_log_prob_updates_once_with_one_set_of_statistics():
  """`log_prob` asks for the map, then for the log-det at its output; both
  come from one pass: one set of statistics, one update."""
  norm = batch_norm(IMAGE)
  x = data(IMAGE)
  mean, variance = mixed_statistics(norm, x)
  with training_mode.training():
    log_prob = flow(norm, IMAGE).log_prob(x)
  y, fldj = normalized(x, mean, variance, norm.epsilon)
  expected = (-0.5 * np.sum(y ** 2, axis=(1, 2, 3))
              - 0.5 * y[0].size * np.log(2 * np.pi) + fldj)
  np.testing.assert_allclose(log_prob, expected, rtol=1e-12)
  np.testing.assert_allclose(norm.running_mean, mean, rtol=1e-12)
  np.testing.assert_allclose(norm.running_variance, variance, rtol=1e-12)


@pytest.mark.parametrize('jit_compile', [False, True])
def test_training_step_traced_once_updates_on_every_call(jit_compile):
  """The mode is read at trace time; the update runs at every call."""
  norm = batch_norm(VECTOR)
  step = tf.function(norm.forward, jit_compile=jit_compile,
                     input_signature=[tf.TensorSpec([None, 5], tf.float64)])
  with training_mode.training():
    step.get_concrete_function()
  for seed in (1, 2):  # Called in evaluation mode: the trace decides.
    x = data(VECTOR, seed=seed)
    mean, variance = mixed_statistics(norm, x)
    np.testing.assert_allclose(
        step(x), normalized(x, mean, variance, norm.epsilon)[0], rtol=1e-12)
    np.testing.assert_allclose(norm.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(norm.running_variance, variance, rtol=1e-12)


def test_inverse_uses_running_averages_and_never_updates_them():
  norm = batch_norm(IMAGE)
  mean, variance = running_averages(IMAGE[-1])
  z = data(IMAGE, seed=3)
  expected_x = np.asarray(z) * np.sqrt(variance + norm.epsilon) + mean
  expected_ildj = -normalized(z, mean, variance, norm.epsilon)[1]
  for mode_block in (contextlib.nullcontext, training_mode.training):
    with mode_block():
      z = tf.identity(z)  # a tensor the cache has not seen
      x = norm.inverse(z)
      ildj = norm.inverse_log_det_jacobian(z, event_ndims=3)
      flow(norm, IMAGE).sample(2, seed=1)
    np.testing.assert_allclose(x, expected_x, rtol=1e-12)
    np.testing.assert_allclose(ildj, expected_ildj, rtol=1e-12)
    np.testing.assert_array_equal(norm.running_mean, mean)
    np.testing.assert_array_equal(norm.running_variance, variance)


def test_evaluation_round_trip_after_training_updates():
  """Once training has moved the averages, evaluation is again an exact
  bijection, with the new averages."""
  norm = batch_norm(IMAGE)
  with training_mode.training():
    norm.forward(data(IMAGE, seed=4))
  x = data(IMAGE, seed=5)
  z = norm.forward(x)
  np.testing.assert_allclose(
      z, normalized(x, norm.running_mean.numpy(),
                    norm.running_variance.numpy(), norm.epsilon)[0],
      rtol=1e-12)
  np.testing.assert_allclose(norm.inverse(tf.identity(z)), x, rtol=1e-12)


def test_cache_hands_back_no_result_of_the_other_mode_or_older_averages():
  """TFP caches results by input tensor (eagerly too). The same tensor in
  the other mode, or in evaluation after the averages moved, is recomputed."""
  norm = batch_norm(VECTOR)
  x = data(VECTOR)
  before = norm.forward(x)  # cached while `before` lives
  mean, variance = mixed_statistics(norm, x)
  with training_mode.training():
    trained = norm.forward(x)
    trained_fldj = norm.forward_log_det_jacobian(x, event_ndims=1)
    norm.forward(data(VECTOR, seed=1))  # moves the averages again
  expected_y, expected_fldj = normalized(x, mean, variance, norm.epsilon)
  np.testing.assert_allclose(trained, expected_y, rtol=1e-12)
  np.testing.assert_allclose(trained_fldj, expected_fldj, rtol=1e-12)
  after = norm.forward(x)
  after_fldj = norm.forward_log_det_jacobian(x, event_ndims=1)
  expected_y, expected_fldj = normalized(
      x, norm.running_mean.numpy(), norm.running_variance.numpy(),
      norm.epsilon)
  np.testing.assert_allclose(after, expected_y, rtol=1e-12)
  np.testing.assert_allclose(after_fldj, expected_fldj, rtol=1e-12)
  assert not np.allclose(after, before, rtol=1e-3)
  assert not np.allclose(after, trained, rtol=1e-3)


def test_two_batch_norms_of_the_same_size_do_not_share_cached_results():
  """TFP compares bijectors by constructor arguments and keys its cache on
  them; each BatchNorm must equal only itself."""
  first, second = batch_norm(VECTOR, seed=1), batch_norm(VECTOR, seed=2)
  assert first != second
  x = data(VECTOR)
  y_first = first.forward(x)  # keeps `first`'s cache entry alive
  np.testing.assert_allclose(
      second.forward(x), normalized(x, *running_averages(5, seed=2),
                                    second.epsilon)[0], rtol=1e-12)
  del y_first


def training_loss(x, event_shape, seed=7):
  """`-sum log_prob(x)` in training mode, from fresh running averages."""
  norm = batch_norm(event_shape, seed=seed)
  with training_mode.training():
    return -tf.reduce_sum(flow(norm, event_shape).log_prob(x)), norm


@pytest.mark.parametrize('event_shape', [VECTOR, IMAGE], ids=EVENTS)
def test_training_gradient_flows_through_the_batch_statistics(event_shape):
  """The gradient is the loss's numeric directional derivative, and differs
  from the gradient with the same statistics held fixed."""
  x = data(event_shape)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss, trained = training_loss(x, event_shape)
  gradient = tape.gradient(loss, x).numpy()
  direction = np.random.RandomState(3).normal(size=x.shape)
  step = 1e-5
  numeric = (training_loss(x + step * direction, event_shape)[0]
             - training_loss(x - step * direction, event_shape)[0]) / (2 * step)
  np.testing.assert_allclose(np.sum(gradient * direction), numeric,
                             rtol=1e-6)
  # Evaluation mode with the averages set to the statistics training used.
  held = BatchNorm(event_shape[-1], dtype=tf.float64)
  held.running_mean.assign(trained.running_mean)
  held.running_variance.assign(trained.running_variance)
  with tf.GradientTape() as tape:
    tape.watch(x)
    held_loss = -tf.reduce_sum(flow(held, event_shape).log_prob(x))
  np.testing.assert_allclose(held_loss, loss, rtol=1e-12)
  assert not np.allclose(tape.gradient(held_loss, x), gradient, rtol=1e-3)


def test_mirrored_replicas_match_one_device_on_the_global_batch(two_replicas):
  """Two replicas ('/cpu:0', '/cpu:1', from conftest), each with half the
  batch, normalize with the statistics of the whole batch: y, log-det,
  log_prob, the gradient of the summed loss and the new running averages are
  one device's."""
  x = data(IMAGE, batch=8)
  strategy = two_replicas
  with strategy.scope():
    mirrored_norm = batch_norm(IMAGE)

  def replica_step(x):
    with training_mode.training():  # Inside: replicas run in threads of their own.
      with tf.GradientTape() as tape:
        tape.watch(x)
        log_prob = flow(mirrored_norm, IMAGE).log_prob(x)
        loss = -tf.reduce_sum(log_prob)
      y = mirrored_norm.forward(x)
      fldj = mirrored_norm.forward_log_det_jacobian(x, event_ndims=3)
    return dict(y=y, fldj=fldj + tf.zeros([4], tf.float64),
                log_prob=log_prob, gradient=tape.gradient(loss, x))

  shards = strategy.experimental_distribute_values_from_function(
      lambda context: x[4 * context.replica_id_in_sync_group:][:4])
  results = tf.function(lambda x: strategy.run(replica_step, (x,)))(shards)
  mirrored = {name: np.concatenate(strategy.experimental_local_results(value))
              for name, value in results.items()}
  mirrored.update(mean=mirrored_norm.running_mean.numpy(),
                  variance=mirrored_norm.running_variance.numpy())

  norm = batch_norm(IMAGE)
  statistics = mixed_statistics(norm, x)
  y, fldj = normalized(x, *statistics, norm.epsilon)
  with training_mode.training(), tf.GradientTape() as tape:
    tape.watch(x)
    log_prob = flow(norm, IMAGE).log_prob(x)
    loss = -tf.reduce_sum(log_prob)
  expected = dict(y=y, fldj=fldj * np.ones(8), log_prob=log_prob,
                  gradient=tape.gradient(loss, x),
                  mean=statistics[0], variance=statistics[1])
  assert not np.allclose(statistics[0], running_averages(IMAGE[-1])[0])
  for name, value in expected.items():
    np.testing.assert_allclose(mirrored[name], value, rtol=1e-10,
                               atol=1e-12, err_msg=name)


def test_checkpoint_round_trip_restores_the_running_averages(tmp_path):
  norm = batch_norm(IMAGE)
  with training_mode.training():
    norm.forward(data(IMAGE))
  path = tf.train.Checkpoint(norm=norm).write(str(tmp_path / 'ckpt'))
  fresh = BatchNorm(IMAGE[-1], dtype=tf.float64)
  tf.train.Checkpoint(norm=fresh).read(path).assert_consumed()
  np.testing.assert_array_equal(fresh.running_mean, norm.running_mean)
  np.testing.assert_array_equal(fresh.running_variance,
                                norm.running_variance)
  x = data(IMAGE, seed=2)
  np.testing.assert_allclose(fresh.forward(x), norm.forward(x), rtol=1e-12)


def test_variables_are_the_two_running_averages():
  norm = bijectors.BatchNorm(6)
  assert not norm.trainable_variables
  assert [v.shape for v in norm.variables] == [(6,), (6,)]
  np.testing.assert_array_equal(norm.running_mean, 0.)
  np.testing.assert_array_equal(norm.running_variance, 1.)
  assert not norm.is_constant_jacobian


@pytest.mark.parametrize('kwargs, message', [
    (dict(momentum=1.), 'momentum'), (dict(momentum=-0.1), 'momentum'),
    (dict(epsilon=0.), 'epsilon'),
])
def test_invalid_arguments_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    BatchNorm(3, **kwargs)


def test_wrong_channel_count_raises():
  with pytest.raises(ValueError, match='expected 3 channels'):
    BatchNorm(3).forward(tf.zeros((2, 4, 4, 1)))


@pytest.mark.parametrize('event_shape', [VECTOR, IMAGE], ids=EVENTS)
def test_training_on_an_empty_batch_leaves_the_running_averages_unchanged(
    event_shape):
  """No examples, no statistics: the running averages stay (not NaN), and
  the empty batch is transformed with them."""
  norm = batch_norm(event_shape)
  before = [norm.running_mean.numpy(), norm.running_variance.numpy()]
  empty = tf.zeros((0,) + event_shape, tf.float64)
  forward = tf.function(norm.forward, input_signature=[
      tf.TensorSpec((None,) + event_shape, tf.float64)])
  with training_mode.training():
    assert norm.forward(empty).shape == empty.shape
    assert forward(empty).shape == empty.shape
    fldj = norm.forward_log_det_jacobian(tf.identity(empty),
                                         event_ndims=len(event_shape))
  np.testing.assert_array_equal(norm.running_mean, before[0])
  np.testing.assert_array_equal(norm.running_variance, before[1])
  _, expected = normalized(np.zeros((1,) + event_shape), *before,
                           norm.epsilon)
  np.testing.assert_allclose(fldj, expected, rtol=1e-12)
