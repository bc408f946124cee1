"""FusedAdam: Keras's Adam update, one fused kernel per variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp.training import optimizers

SHAPES = [(3, 3, 4, 5), (5,), ()]


def gradients(step):
  """Distinct, sign-changing gradients for each step and variable."""
  return [tf.random.stateless_normal(shape, [step, i])
          for i, shape in enumerate(SHAPES)]


def run_steps(optimizer, variables, first_step, num_steps):
  for step in range(first_step, first_step + num_steps):
    optimizer.apply_gradients(zip(gradients(step), variables))


def make_variables():
  return [tf.Variable(tf.random.stateless_normal(shape, [99, i]))
          for i, shape in enumerate(SHAPES)]


def optimizer_state(optimizer, variables):
  return [v.numpy() for v in variables] + [
      np.asarray(v) for v in optimizer.variables]


@pytest.mark.parametrize('amsgrad', [False, True])
@pytest.mark.parametrize('compiled', [False, True])
def test_fused_adam_takes_the_steps_keras_adam_takes(amsgrad, compiled):
  """Also with a learning-rate schedule and clipping handled by Keras."""
  states = {}
  for name, adam in (('keras', keras.optimizers.Adam),
                     ('fused', optimizers.FusedAdam)):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
    optimizer = adam(schedule, amsgrad=amsgrad, clipnorm=2.)
    variables = make_variables()
    optimizer.build(variables)

    def apply(step, optimizer=optimizer, variables=variables):
      optimizer.apply(gradients(step), variables)

    if compiled:
      apply = tf.function(apply)
    for step in range(4):
      apply(step)
    states[name] = optimizer_state(optimizer, variables)
  assert len(states['fused']) == len(states['keras'])
  for fused, reference in zip(states['fused'], states['keras']):
    np.testing.assert_allclose(fused, reference, rtol=1e-6, atol=1e-5)
  initial = make_variables()
  assert not np.allclose(states['fused'][0], initial[0].numpy())


def test_checkpoints_move_between_keras_adam_and_fused_adam(tmp_path):
  """Two Keras steps, then two fused ones from the checkpoint, equal four."""
  reference_variables = make_variables()
  reference = keras.optimizers.Adam(0.1)
  run_steps(reference, reference_variables, 0, 4)

  variables = make_variables()
  keras_adam = keras.optimizers.Adam(0.1)
  run_steps(keras_adam, variables, 0, 2)
  path = tf.train.Checkpoint(variables=variables, optimizer=keras_adam).save(
      str(tmp_path / 'ckpt'))
  resumed_variables = [tf.Variable(tf.zeros(shape)) for shape in SHAPES]
  fused = optimizers.FusedAdam(0.1)
  fused.build(resumed_variables)
  tf.train.Checkpoint(variables=resumed_variables, optimizer=fused).restore(
      path).assert_consumed()
  run_steps(fused, resumed_variables, 2, 2)
  for resumed, expected in zip(
      optimizer_state(fused, resumed_variables),
      optimizer_state(reference, reference_variables)):
    np.testing.assert_allclose(resumed, expected, rtol=1e-6, atol=1e-5)


def strategy_named(name):
  if name == 'default':
    return tf.distribute.get_strategy()
  devices = [d.name for d in tf.config.list_logical_devices('CPU')][:2]
  if len(devices) < 2:
    pytest.skip('needs two logical CPUs (tests/conftest.py sets them up)')
  return tf.distribute.MirroredStrategy(devices)


def replica_values(strategy, variable):
  """The value of each replica's copy of a (Keras) variable."""
  if isinstance(variable, keras.Variable):
    variable = variable.value
  return [np.asarray(v) for v in strategy.experimental_local_results(variable)]


@pytest.mark.parametrize('strategy_name', ['default', 'mirrored'])
def test_moving_averages_equal_the_closed_form(strategy_name):
  """a_1 = w_1, a_k = d a_(k-1) + (1 - d) w_k after each update, on every
  replica, with updates applied in cross-replica context as the trainer does."""
  strategy = strategy_named(strategy_name)
  decay = 0.8
  with strategy.scope():
    variables = make_variables()
    optimizer = optimizers.make_optimizer(0.1, ema_decay=decay)
    optimizer.build(variables)
  apply = tf.function(lambda step: optimizer.apply_gradients(
      zip(gradients(step), variables)))
  expected = None
  for step in range(5):
    apply(tf.constant(step))
    weights = [v.numpy() for v in variables]
    expected = weights if expected is None else [
        decay * a + (1 - decay) * w for a, w in zip(expected, weights)]
  averages = optimizers.moving_averages(optimizer)
  assert len(averages) == len(variables)
  for average, value in zip(averages, expected):
    copies = replica_values(strategy, average)
    assert len(copies) == strategy.num_replicas_in_sync
    for copy in copies:
      np.testing.assert_allclose(copy, value, rtol=1e-6, atol=1e-7)
  # The averages lag the weights: they are not the weights themselves.
  assert not np.allclose(expected[0], variables[0].numpy())


@pytest.mark.parametrize('strategy_name', ['default', 'mirrored'])
def test_averaged_weights_swaps_the_averages_in_and_restores_the_weights(
    strategy_name):
  strategy = strategy_named(strategy_name)
  with strategy.scope():
    variables = make_variables()
    optimizer = optimizers.make_optimizer(0.1, ema_decay=0.5)
    optimizer.build(variables)
  optimizers.start_averages(optimizer, variables)
  run_steps(optimizer, variables, 0, 3)
  weights = [v.numpy() for v in variables]
  averages = [a.numpy() for a in optimizers.moving_averages(optimizer)]
  with pytest.raises(KeyboardInterrupt):
    with optimizers.averaged_weights(optimizer, variables):
      for variable, average in zip(variables, averages):
        for copy in replica_values(strategy, variable):
          np.testing.assert_array_equal(copy, average)
      raise KeyboardInterrupt  # The training values come back all the same.
  for variable, weight in zip(variables, weights):
    for copy in replica_values(strategy, variable):
      np.testing.assert_array_equal(copy, weight)
  assert not np.allclose(averages[0], weights[0])


def test_start_averages_sets_them_to_the_weights_before_any_update():
  variables = make_variables()
  optimizer = optimizers.make_optimizer(0.1, ema_decay=0.9)
  optimizer.build(variables)
  optimizers.start_averages(optimizer, variables)
  for average, variable in zip(optimizers.moving_averages(optimizer),
                               variables):
    np.testing.assert_array_equal(average.numpy(), variable.numpy())


def test_without_averaging_averaged_weights_changes_nothing():
  variables = make_variables()
  optimizer = optimizers.make_optimizer(0.1)
  optimizer.build(variables)
  run_steps(optimizer, variables, 0, 2)
  weights = [v.numpy() for v in variables]
  with optimizers.averaged_weights(optimizer, variables):
    for variable, weight in zip(variables, weights):
      np.testing.assert_array_equal(variable.numpy(), weight)
  assert optimizers.moving_averages(optimizer) == []


def test_plain_recipe_is_fused_adam_with_the_same_checkpoint(tmp_path):
  """No warmup, decay or averaging: the optimizer and checkpoints of before."""
  reference_variables = make_variables()
  reference = optimizers.FusedAdam(0.1)
  run_steps(reference, reference_variables, 0, 2)
  path = tf.train.Checkpoint(optimizer=reference).save(str(tmp_path / 'ckpt'))
  optimizer = optimizers.make_optimizer(0.1)
  optimizer.build(make_variables())
  assert type(optimizer) is optimizers.FusedAdam
  assert ([(v.name, v.shape) for v in optimizer.variables] ==
          [(v.name, v.shape) for v in reference.variables])
  tf.train.Checkpoint(optimizer=optimizer).restore(path).assert_consumed()
  assert float(optimizer.learning_rate) == pytest.approx(0.1)


def warmup_cosine(t, learning_rate, warmup, total, floor):
  """The schedule's formula, written out in NumPy."""
  if t < warmup:
    return learning_rate * t / warmup
  s = min(t - warmup, total - warmup) / (total - warmup)
  return learning_rate * (floor + (1 - floor) * (1 + np.cos(np.pi * s)) / 2)


@pytest.mark.parametrize('settings, steps', [
    # Start, mid-warmup, end of warmup, mid-decay, end, after the end.
    (dict(warmup_steps=10, lr_decay='cosine', total_steps=50,
          lr_decay_floor=0.1), [0, 5, 10, 30, 50, 70]),
    (dict(warmup_steps=0, lr_decay='cosine', total_steps=40,
          lr_decay_floor=0.), [0, 10, 20, 40]),
    (dict(warmup_steps=8, lr_decay='none'), [0, 3, 8, 1000]),
])
def test_learning_rate_follows_the_formula(settings, steps):
  """Read from the optimizer, as a function of its update count."""
  optimizer = optimizers.make_optimizer(0.01, **settings)
  optimizer.build(make_variables())
  for t in steps:
    optimizer.iterations.assign(t)
    if settings['lr_decay'] == 'cosine':
      expected = warmup_cosine(t, 0.01, settings['warmup_steps'],
                               settings['total_steps'],
                               settings['lr_decay_floor'])
    else:
      expected = 0.01 * min(t, settings['warmup_steps']) / settings[
          'warmup_steps']
    assert float(optimizer.learning_rate) == pytest.approx(
        expected, rel=1e-5, abs=1e-10), t


@pytest.mark.parametrize('settings, message', [
    (dict(ema_decay=1.), 'ema_decay'),
    (dict(ema_decay=-0.1), 'ema_decay'),
    (dict(lr_decay='linear'), 'lr_decay'),
    (dict(lr_decay='cosine', warmup_steps=10, total_steps=10), 'warmup'),
    (dict(lr_decay='cosine'), 'warmup'),
    (dict(warmup_steps=-1), 'warmup_steps'),
])
def test_make_optimizer_rejects_unusable_settings(settings, message):
  with pytest.raises(ValueError, match=message):
    optimizers.make_optimizer(0.01, **settings)
