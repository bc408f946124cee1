"""FlowModel: Keras sees, trains and saves every variable of every flow."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_realnvp
from tf_realnvp import FlowModel
from tf_realnvp.flows import objective

tfb = tfp.bijectors
tfd = tfp.distributions

TINY = dict(num_layers=2, hidden_units=[8])
# name: (kind, event_shape, settings, learning rate)
TRAINED = {
    'realnvp': ('realnvp', (2,), TINY, 1e-2),
    'nice': ('nice', (2,), TINY, 1e-2),
    # With the paper's BatchNorm bijector: running averages to track too.
    'glow': ('glow', (2,), dict(TINY, batch_norm_couplings=True), 1e-2),
    # One scale: four couplings, a quarter of the tracing of two scales.
    'realnvp_images': ('realnvp', (8, 8, 1), dict(
        num_scales=1, num_res_blocks=1, num_filters=4), 3e-3),
    # Flow++'s learned dequantization: its noise flow's networks too.
    'realnvp_variational': ('realnvp', (4, 4, 3), dict(
        num_scales=1, num_res_blocks=1, num_filters=4,
        dequantization='variational'), 3e-3),
}


def vectors(n=256, seed=0):
  """Correlated 2-D points far from N(0, I): a flow has much to learn."""
  a, b = np.random.RandomState(seed).normal(size=(2, n)).astype(np.float32)
  return np.stack([2. * a + 1., a - 0.3 * b], axis=1)


def images(n=64, seed=0, shape=(8, 8, 1)):
  """Images of one checkerboard plus noise, in [0, 256)."""
  rng = np.random.RandomState(seed)
  board = np.indices(shape[:2]).sum(axis=0) % 2
  pixels = 60. + 120. * board[None, :, :, None] + rng.normal(
      0., 10., size=(n, *shape))
  pixels = np.floor(np.clip(pixels, 0., 255.)) + rng.uniform(size=pixels.shape)
  return pixels.astype(np.float32)


def data_for(event_shape):
  return images(shape=event_shape) if len(event_shape) == 3 else vectors()


def storage(weights):
  """The `tf.Variable`s behind Keras weights (or variables), by id."""
  return sorted(id(w.value if isinstance(w, keras.Variable) else w)
                for w in weights)


@pytest.mark.parametrize('kind, event_shape, settings', [
    ('realnvp', (2,), TINY), ('nice', (2,), TINY),
    ('glow', (2,), dict(TINY, batch_norm_couplings=True)),
    ('maf', (2,), TINY), ('iaf', (2,), TINY),
    ('ffjord', (2,), dict(hidden_units=[8])),
    ('realnvp', (8, 8, 1), dict(num_res_blocks=1, num_filters=4)),
    ('glow', (4, 4, 1), dict(num_scales=1, num_res_blocks=1, num_filters=4,
                             conditioner_options=dict(batch_norm=True))),
    ('realnvp', (4, 4, 3), dict(num_scales=1, num_res_blocks=1, num_filters=4,
                                dequantization='variational')),
])
def test_keras_tracks_every_variable_of_the_flow_once(kind, event_shape,
                                                       settings):
  model = FlowModel(kind=kind, event_shape=event_shape, settings=settings)
  flow = model.flow
  assert len(model.trainable_weights) == len(flow.trainable_variables) > 0
  assert storage(model.trainable_weights) == storage(flow.trainable_variables)
  assert storage(model.weights) == storage(flow.variables)
  non_trainable = len(flow.variables) - len(flow.trainable_variables)
  assert len(model.non_trainable_weights) == non_trainable
  if kind == 'glow':  # ActNorm's flag, the 1x1 convolutions' P and signs, BN.
    assert non_trainable > 0


@pytest.fixture(scope='module', params=list(TRAINED))
def trained(request):
  """A FlowModel of each kind, before and after a few epochs of `fit`."""
  kind, event_shape, settings, learning_rate = TRAINED[request.param]
  keras.utils.set_random_seed(0)
  model = FlowModel(kind=kind, event_shape=event_shape, settings=settings)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate))
  x = data_for(event_shape)
  before = [w.numpy().copy() for w in model.weights]
  history = model.fit(x, batch_size=32, epochs=3, verbose=0).history
  return model, x, before, history


def test_fit_lowers_the_loss(trained):
  model, _, _, history = trained
  metric = 'bits_per_dim' if len(model.flow.event_shape) == 3 else 'nll_nats'
  assert set(history) == {'loss', metric}
  assert history['loss'][-1] < history['loss'][0]
  assert history[metric][-1] < history[metric][0]


def test_fit_changes_every_trainable_variable(trained):
  model, _, before, _ = trained
  trainable = {id(w) for w in model.trainable_weights}
  unchanged = [w.path for w, old in zip(model.weights, before)
               if id(w) in trainable and np.array_equal(w.numpy(), old)]
  assert not unchanged


def test_fit_trains_in_training_mode_and_evaluate_does_not(trained):
  """The BatchNorm bijector's running averages move in `fit` only."""
  model, x, before, _ = trained
  if model.flow.name != 'glow':
    pytest.skip('only the glow flow here has batch normalization')
  running = [i for i, w in enumerate(model.weights) if 'running' in w.name]
  assert running
  for i in running:
    assert not np.array_equal(model.weights[i].numpy(), before[i])
  after_fit = [model.weights[i].numpy() for i in running]
  model.evaluate(x, verbose=0)
  for i, value in zip(running, after_fit):
    np.testing.assert_array_equal(model.weights[i].numpy(), value)


def test_evaluate_reports_the_objective_and_the_likelihood(trained):
  model, x, _, _ = trained
  result = model.evaluate(x, batch_size=len(x), verbose=0, return_dict=True)
  flow = model.flow
  dims = flow.event_shape.num_elements()
  nll = -np.mean(flow.log_prob(x))
  if len(flow.event_shape) == 3:
    assert set(result) == {'loss', 'bits_per_dim'}
    np.testing.assert_allclose(
        result['bits_per_dim'],
        objective.nats_to_bits_per_dim(nll, flow.event_shape), rtol=1e-5)
  else:
    assert set(result) == {'loss', 'nll_nats'}
    np.testing.assert_allclose(result['nll_nats'], nll, rtol=1e-5)
  penalty = 5e-5 * tf_realnvp.weight_scale_l2(flow).numpy()
  assert penalty > 0
  np.testing.assert_allclose(result['loss'], nll / dims + penalty, rtol=1e-5)


def test_keras_file_round_trip_gives_the_same_log_prob(trained, tmp_path):
  model, x, _, _ = trained
  path = str(tmp_path / 'm.keras')
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, FlowModel)
  assert loaded.flow is not model.flow
  np.testing.assert_allclose(loaded(x[:16]), model(x[:16]), rtol=1e-6)
  assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations


def test_weights_file_round_trip_into_a_fresh_model(trained, tmp_path):
  model, x, _, _ = trained
  path = str(tmp_path / 'm.weights.h5')
  model.save_weights(path)
  config = model.get_config()
  fresh = FlowModel(kind=config['kind'], event_shape=config['event_shape'],
                    settings=config['settings'])
  assert not np.allclose(fresh(x[:16]), model(x[:16]))
  fresh.load_weights(path)
  np.testing.assert_allclose(fresh(x[:16]), model(x[:16]), rtol=1e-6)


def test_fit_under_two_replicas_takes_the_one_device_step(two_replicas):
  """Glow with BatchNorm: ActNorm initialized across replicas, synchronized
  batch statistics, summed gradients, the same update as one device."""
  settings = dict(num_layers=1, hidden_units=[4], batch_norm_couplings=True)
  keras.utils.set_random_seed(1)
  with two_replicas.scope():
    mirrored = FlowModel(kind='glow', event_shape=(2,), settings=settings)
    mirrored.compile(optimizer=keras.optimizers.SGD(0.05))
  assert all(isinstance(w.value, tf.distribute.DistributedValues)
             for w in mirrored.weights)
  single = FlowModel(kind='glow', event_shape=(2,), settings=settings)
  single.set_weights(mirrored.get_weights())
  single.compile(optimizer=keras.optimizers.SGD(0.05))
  x = vectors(64)
  dataset = tf.data.Dataset.from_tensor_slices(x).batch(64)
  start = mirrored.get_weights()
  mirrored.fit(dataset, epochs=1, verbose=0, shuffle=False)
  single.fit(dataset, epochs=1, verbose=0, shuffle=False)
  moved = set()
  for ours, theirs, old in zip(mirrored.weights, single.weights, start):
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5,
                               err_msg=ours.path)
    if not np.array_equal(ours.numpy(), old):
      moved.add(ours.name.split('.')[-1])
  # The couplings' heads, ActNorm, the 1x1 convolutions, the BN averages.
  assert {'kernel', 'loc', 'log_scale', 'lower_upper', 'initialized',
          'running_mean', 'running_variance'} <= moved


def test_maf_training_keeps_the_autoregressive_masks():
  """MADE's masks are `tf_keras` kernel constraints: Keras must apply them."""
  model = FlowModel(kind='maf', event_shape=(3,),
                    settings=dict(num_layers=1, hidden_units=[8]))
  assert any(w.constraint is not None for w in model.trainable_weights)
  x = np.random.RandomState(0).normal(size=(64, 3)).astype(np.float32)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  model.fit(x, batch_size=32, epochs=1, verbose=0)
  points = tf.constant(x[:4])
  with tf.GradientTape() as tape:
    tape.watch(points)
    latent = model.flow.bijector.inverse(points)
  jacobian = tape.batch_jacobian(latent, points).numpy()
  np.testing.assert_array_equal(np.triu(jacobian, 1), 0.)


def test_a_flow_object_saves_weights_but_not_a_keras_file(tmp_path):
  flow = tf_realnvp.make_flow('nice', (2,), **TINY)
  model = FlowModel(flow, l2=0.)
  x = vectors(8)
  with pytest.raises(ValueError, match='settings'):
    model.save(str(tmp_path / 'm.keras'))
  assert not os.path.exists(tmp_path / 'm.keras')
  flow.trainable_variables[-1].assign([0.5, -0.25])  # NICE's log-scale.
  model.save_weights(str(tmp_path / 'm.weights.h5'))
  fresh = FlowModel(tf_realnvp.make_flow('nice', (2,), **TINY))
  fresh.load_weights(str(tmp_path / 'm.weights.h5'))
  np.testing.assert_allclose(fresh(x), model(x), rtol=1e-6)


def test_a_keras_model_holding_a_flow_model_tracks_its_weights():
  class Density(keras.Model):

    def __init__(self, density):
      super().__init__()
      self.density = density

    def call(self, x):
      return self.density(x)

  inner = FlowModel(kind='glow', event_shape=(2,), settings=TINY)
  outer = Density(inner)
  assert storage(outer.trainable_weights) == storage(
      inner.flow.trainable_variables)
  assert storage(outer.weights) == storage(inner.flow.variables)


class _KerasShift(tfb.Bijector):
  """A bijector hiding a Keras 3 layer from `tf.Module`'s variable search."""

  def __init__(self):
    self.net = keras.layers.Dense(2)
    self.net.build((None, 2))
    super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True,
                     name='keras_shift')

  def _forward(self, x):
    return x + self.net.bias

  def _inverse(self, y):
    return y - self.net.bias

  def _forward_log_det_jacobian(self, x):
    return tf.zeros([], x.dtype)


def test_a_flow_hiding_keras_variables_is_refused_when_built():
  base = tfd.Sample(tfd.Normal(0., 1.), [2])
  with pytest.raises(ValueError, match='dense'):
    FlowModel(tfd.TransformedDistribution(base, _KerasShift()))


def test_fit_refuses_a_flow_without_trainable_variables():
  model = FlowModel(tfd.Sample(tfd.Normal(0., 1.), [2]))
  model.compile(optimizer='adam')
  with pytest.raises(ValueError, match='no trainable'):
    model.fit(vectors(8), verbose=0)


def test_fit_and_evaluate_use_the_one_objective(monkeypatch):
  calls = []
  loss = objective.loss

  def recording(flow, x, l2, context=None):
    calls.append(l2)
    return loss(flow, x, l2, context)
  monkeypatch.setattr(objective, 'loss', recording)
  model = FlowModel(kind='realnvp', event_shape=(2,),
                    settings=dict(num_layers=1, hidden_units=[4]), l2=1e-3)
  model.compile(optimizer='adam')
  model.fit(vectors(8), verbose=0)
  model.evaluate(vectors(8), verbose=0)
  assert calls and set(calls) == {1e-3}
  assert len(calls) >= 2


def test_needs_a_flow_or_its_settings():
  with pytest.raises(ValueError, match='either'):
    FlowModel()
  with pytest.raises(ValueError, match='either'):
    FlowModel(tf_realnvp.make_flow('nice', (2,), **TINY), kind='nice')
