"""`recompute='networks'` and `'invertible'`: the gradients of `'none'`, from
activations recomputed in the backward pass; the settings that cannot use
them are refused."""

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tf_realnvp
from tf_realnvp import networks
from tf_realnvp import training
from tf_realnvp import training_mode
from tf_realnvp.config import experiment

BATCH = 4

FLOWS = {
    # Images: two scales (squeeze, factor-out), batch norm in the networks.
    'image_batch_norm': ((8, 8, 3), dict(
        num_res_blocks=1, num_filters=4,
        conditioner_options=dict(batch_norm=True))),
    # Vectors: the whole chain is reversible: Glow's steps, additive
    # couplings, NICE's scaling and the class prior.
    'vector_glow_labels': ((2,), dict(
        num_coupling_layers=3, hidden_units=(8,), step='glow',
        coupling='additive', num_classes=3, conditional_prior=True)),
}


def gradients(name, recompute):
  """The loss, the gradients and the variables after one training step's
  forward pass, traced as the trainer traces it."""
  event_shape, settings = FLOWS[name]
  keras.utils.set_random_seed(0)
  flow = tf_realnvp.RealNVP(event_shape, recompute=recompute, **settings)
  rng = np.random.RandomState(0)
  x = (rng.uniform(0., 256., (BATCH,) + event_shape) if len(event_shape) == 3
       else rng.normal(size=(BATCH,) + event_shape)).astype(np.float32)
  kwargs = {}
  if 'num_classes' in settings:
    kwargs = dict(bijector_kwargs={'conditional_input': np.arange(BATCH) % 3})
  flow.log_prob(x, **kwargs)  # Glow's ActNorm initializes itself.
  for v in flow.trainable_variables:  # Couplings that are not the identity.
    v.assign(v + rng.normal(0., 0.05, v.shape).astype(np.float32))

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      with training_mode.training():
        loss = -tf.reduce_mean(flow.log_prob(x, **kwargs))
    # Taken after the training block closed, as Keras's `fit` does.
    return loss, tape.gradient(loss, flow.trainable_variables)

  loss, grads = step(tf.constant(x))
  return loss.numpy(), [g.numpy() for g in grads], [
      v.numpy() for v in flow.variables]


@pytest.fixture(scope='module')
def stored():
  return {name: gradients(name, 'none') for name in FLOWS}


def relative_error(expected, actual):
  return np.sqrt(sum(np.sum((e - a) ** 2) for e, a in zip(expected, actual))
                 / sum(np.sum(e ** 2) for e in expected))


@pytest.mark.parametrize('name', sorted(FLOWS))
def test_networks_recomputed_give_the_stored_gradients(stored, name):
  loss, grads, variables = gradients(name, 'networks')
  assert loss == stored[name][0]
  assert relative_error(stored[name][1], grads) < 1e-6
  # Batch norm's running averages moved once, not once more when recomputed.
  for expected, actual in zip(stored[name][2], variables):
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('name', sorted(FLOWS))
def test_rebuilt_inputs_give_the_stored_gradients(stored, name):
  """Float32 round-off of the inverse, a few units in the last place per
  layer: about 1e-7 of the gradients here (`bijectors.Reversible`)."""
  loss, grads, variables = gradients(name, 'invertible')
  assert loss == stored[name][0]
  assert relative_error(stored[name][1], grads) < 1e-5
  for expected, actual in zip(stored[name][2], variables):
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-7)


def test_networks_run_again_only_in_the_backward_pass_of_training():
  """One network call per coupling to evaluate or in training's forward
  pass, and one more in its backward pass."""
  keras.utils.set_random_seed(0)
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2, hidden_units=(4,),
                            recompute='networks')
  x = tf.zeros((BATCH, 2))
  call = networks.MLPConditioner.call
  with mock.patch.object(networks.MLPConditioner, 'call', autospec=True,
                         side_effect=call) as calls:
    flow.log_prob(x)
    assert calls.call_count == 2
    with tf.GradientTape() as tape, training_mode.training():
      loss = tf.reduce_sum(flow.log_prob(x + 1.))  # Not TFP's cached result.
    assert calls.call_count == 4
    tape.gradient(loss, flow.trainable_variables)
    assert calls.call_count == 6


@pytest.mark.parametrize('recompute, backward_runs',
                         [('networks', 2), ('invertible', 3)])
def test_residual_blocks_run_again_from_their_inputs(recompute,
                                                     backward_runs):
  """In the backward pass each residual block runs in the network's
  recomputation and once more for its own gradients (and, `'invertible'`,
  in the inverse that rebuilds the coupling's input)."""
  keras.utils.set_random_seed(0)
  flow = tf_realnvp.RealNVP((4, 4, 3), num_scales=1, num_res_blocks=2,
                            num_filters=4, recompute=recompute)
  x = tf.random.uniform((BATCH, 4, 4, 3), maxval=256.)
  block = networks.ResidualBlock._block
  with mock.patch.object(networks.ResidualBlock, '_block', autospec=True,
                         side_effect=block) as calls:
    flow.log_prob(x)
    evaluation = calls.call_count  # Two blocks per coupling.
    with tf.GradientTape() as tape, training_mode.training():
      loss = tf.reduce_sum(flow.log_prob(x + 1.))
    assert calls.call_count == 2 * evaluation > 0
    tape.gradient(loss, flow.trainable_variables)
    assert calls.call_count == (2 + backward_runs) * evaluation


def test_a_checkpoint_restores_in_every_mode(tmp_path):
  """The modes build the same variables under the same names, so a resumed
  run may change its mode."""
  paths = {}
  for recompute in ('none', 'invertible'):
    keras.utils.set_random_seed(0)
    flow = tf_realnvp.RealNVP((4, 4, 3), num_scales=1, num_res_blocks=1,
                              num_filters=4, recompute=recompute)
    paths[recompute] = tf.train.Checkpoint(flow=flow).write(
        str(tmp_path / recompute))
  names = {recompute: [name for name, _ in tf.train.list_variables(path)]
           for recompute, path in paths.items()}
  assert names['none'] == names['invertible'] and len(names['none']) > 20


@pytest.mark.parametrize('settings, message', [
    (dict(recompute='invertible', batch_norm='couplings'),
     '--recompute=invertible cannot rebuild'),
    (dict(recompute='networks', flow='maf'),
     '--recompute applies to the couplings'),
    (dict(recompute='all'), '--recompute must be one of none, networks'),
])
def test_a_mode_that_cannot_work_is_refused_at_resolve_time(settings,
                                                           message):
  with pytest.raises(experiment.ConfigError, match=message):
    experiment.resolve(tf_realnvp.config.Config(dataset='moons', **settings))


def test_recomputed_batch_norm_under_several_replicas_is_refused(tmp_path):
  """Two CPU replicas (tests/conftest.py): a one-line error before training."""
  config = tf_realnvp.config.Config(
      dataset='mnist', model_dir=str(tmp_path), strategy='mirrored',
      recompute='networks', batch_norm='networks', train_steps=1)
  with tfds.testing.mock_data(num_examples=4), pytest.raises(
      experiment.ConfigError, match='needs one device'):
    training.train_and_evaluate(experiment.resolve(config))


def test_the_library_refuses_an_unknown_mode_and_invertible_batch_norm():
  with pytest.raises(ValueError, match='recompute must be one of'):
    tf_realnvp.RealNVP((2,), recompute='some')
  with pytest.raises(ValueError, match="Use recompute='networks'"):
    tf_realnvp.RealNVP((2,), recompute='invertible',
                       batch_norm_couplings=True)
  with pytest.raises(ValueError, match='does not take recompute'):
    tf_realnvp.make_flow('ffjord', (2,), recompute='networks')
