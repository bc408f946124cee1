"""FusedAdam: Keras's Adam update, one fused kernel per variable."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp import optimizers

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
