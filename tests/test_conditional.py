"""Conditional flows: the context reaches every layer, exactly and only as asked."""

import os

import bijector_checks
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tensorflow_probability as tfp
from runs import TINY_IMAGE_MODEL

import tf_realnvp
from tf_realnvp import bijectors
from tf_realnvp import config as config_lib
from tf_realnvp import evaluation
from tf_realnvp import networks
from tf_realnvp import training
from tf_realnvp.bijectors.conditional_prior import ConditionalPrior
from tf_realnvp.bijectors.context import Context
from tf_realnvp.config import experiment


def kwargs(context):
  return dict(conditional_input=context)


def conditional_coupling(mask, context):
  if mask.ndim == 3:
    net = networks.ResNetConditioner(
        mask.shape[-1], num_blocks=1, num_filters=4,
        context_features=context.features, dtype='float64')
  else:
    net = networks.MLPConditioner(
        mask.shape[-1], hidden_units=(16, 16),
        context_features=context.features, dtype='float64')
  return bijector_checks.perturb(
      bijectors.AffineCoupling(mask, net, context=context))


def prior(event_shape, context):
  return bijector_checks.perturb(
      ConditionalPrior(event_shape, context, dtype=tf.float64))


LABELS = Context(num_classes=3)
VECTORS = Context(size=4)
CASES = {
    'coupling_image_labels': (
        lambda: conditional_coupling(
            bijectors.checkerboard_mask(4, 4, 2, 0), LABELS),
        (4, 4, 2), tf.constant([2, 0])),
    'coupling_vector_vectors': (
        lambda: conditional_coupling(bijectors.alternating_mask(5, 1),
                                     VECTORS),
        (5,), tf.constant(np.random.RandomState(3).normal(size=(2, 4)))),
    'prior_labels': (lambda: prior((2, 2, 3), LABELS), (2, 2, 3),
                     tf.constant([1, 2])),
    'prior_vectors': (lambda: prior((3,), VECTORS), (3,),
                      tf.constant(np.random.RandomState(4).normal(
                          size=(2, 4)))),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_log_det_with_a_context_matches_autodiff_and_inverse_undoes_forward(
    name):
  make, event_shape, context = CASES[name]
  bijector = make()
  x = tf.constant(np.random.RandomState(1).normal(size=(2,) + event_shape))
  flat = tf.reshape(x, [2, -1])
  with tf.GradientTape() as tape:
    tape.watch(flat)
    y = bijector.forward(tf.reshape(flat, x.shape), **kwargs(context))
    flat_y = tf.reshape(y, [2, -1])
  _, expected = np.linalg.slogdet(tape.batch_jacobian(flat_y, flat).numpy())
  fldj = bijector.forward_log_det_jacobian(x, len(event_shape),
                                           **kwargs(context))
  np.testing.assert_allclose(fldj, expected, rtol=1e-9)
  assert np.all(np.abs(fldj) > 1e-3)
  x_again = bijector.inverse(tf.identity(y), **kwargs(context))
  np.testing.assert_allclose(x_again, x, rtol=1e-9, atol=1e-9)
  ildj = bijector.inverse_log_det_jacobian(tf.identity(y), len(event_shape),
                                           **kwargs(context))
  np.testing.assert_allclose(ildj, -fldj, rtol=1e-9)


@pytest.mark.parametrize('name', sorted(CASES))
def test_changing_the_context_changes_the_output(name):
  make, event_shape, context = CASES[name]
  bijector = make()
  x = tf.constant(np.random.RandomState(1).normal(size=(2,) + event_shape))
  other = context[::-1]
  y, y_other = (bijector.forward(x, **kwargs(c)) for c in (context, other))
  assert not np.allclose(y, y_other, atol=1e-3)


def small_flow(event_shape, **settings):
  keras.utils.set_random_seed(0)
  if len(event_shape) == 3:
    flow = tf_realnvp.RealNVP(event_shape, num_scales=2, num_res_blocks=1,
                              num_filters=4, dtype=tf.float64,
                              network_dtype='float64', **settings)
  else:
    flow = tf_realnvp.RealNVP(event_shape, num_coupling_layers=3,
                              hidden_units=(16,), dtype=tf.float64,
                              network_dtype='float64', **settings)
  return bijector_checks.perturb(flow, scale=0.1)


@pytest.mark.parametrize('event_shape', [(4, 4, 2), (3,)],
                         ids=['image', 'vector'])
def test_each_example_gets_the_density_of_its_own_class(event_shape):
  flow = small_flow(event_shape, num_classes=3, conditional_prior=True)
  x = tf.constant(np.random.RandomState(2).uniform(
      1, 255, size=(4,) + event_shape))
  labels = tf.constant([0, 2, 1, 2])
  log_prob = flow.log_prob(x, bijector_kwargs=kwargs(labels)).numpy()
  alone = [flow.log_prob(x[i], bijector_kwargs=kwargs(labels[i])).numpy()
           for i in range(4)]
  np.testing.assert_allclose(log_prob, alone, rtol=1e-9)
  # One label for the whole batch, or every label for one example.
  np.testing.assert_allclose(
      flow.log_prob(x, bijector_kwargs=kwargs(2))[1::2], log_prob[1::2],
      rtol=1e-9)
  every_class = flow.log_prob(x[1], bijector_kwargs=kwargs(tf.range(3)))
  assert every_class.shape == (3,)
  np.testing.assert_allclose(every_class[2], log_prob[1], rtol=1e-9)
  assert len(set(np.round(every_class.numpy(), 6))) == 3
  samples = flow.sample(2, seed=1, bijector_kwargs=kwargs(labels[:2]))
  assert samples.shape == (2,) + event_shape


def test_the_context_embedding_and_prior_are_trainable_variables():
  plain = small_flow((3,))
  conditional = small_flow((3,), num_classes=5, conditional_prior=True)
  extra = (len(conditional.trainable_variables)
           - len(plain.trainable_variables))
  assert extra == 3 + 2  # An embedding per coupling; the prior's W and b.
  with tf.GradientTape() as tape:
    nll = -tf.reduce_mean(conditional.log_prob(
        tf.ones([2, 3], tf.float64), bijector_kwargs=kwargs([1, 4])))
  gradients = tape.gradient(nll, conditional.trainable_variables)
  assert all(g is not None for g in gradients)


@pytest.mark.parametrize('call, error, message', [
    (lambda f: f.log_prob(tf.zeros([1, 3], tf.float64)), ValueError,
     'conditional: pass the context'),
    (lambda f: f.log_prob(tf.zeros([1, 3], tf.float64),
                          bijector_kwargs=dict(context=[1])), ValueError,
     r"unknown keyword argument\(s\) \['context'\]"),
    (lambda f: f.log_prob(tf.zeros([1, 3], tf.float64),
                          bijector_kwargs=kwargs([1.])), TypeError,
     'class labels must be integers'),
    (lambda f: f.sample(1, bijector_kwargs=kwargs([3])),
     tf.errors.InvalidArgumentError, 'not below num_classes=3'),
], ids=['missing', 'unknown_key', 'float_labels', 'label_out_of_range'])
def test_a_bad_context_raises(call, error, message):
  flow = small_flow((3,), num_classes=3)
  with pytest.raises(error, match=message):
    call(flow)


def test_an_unconditional_flow_refuses_a_context():
  flow = small_flow((3,))
  with pytest.raises(ValueError, match='not conditional'):
    flow.log_prob(tf.zeros([1, 3], tf.float64), bijector_kwargs=kwargs([1]))
  with pytest.raises(ValueError, match='unknown keyword'):
    flow.sample(1, bijector_kwargs=dict(temperature=0.5))


def test_a_conditioner_must_be_trackable():
  layer = keras.layers.Dense(4)
  with pytest.raises(TypeError, match='keras.layers.Layer or a tf.Module'):
    bijectors.AffineCoupling(bijectors.alternating_mask(2, 0),
                             lambda x: tf.split(layer(x), 2, axis=-1))


class ShiftModule(tf.Module):

  def __init__(self):
    super().__init__()
    self.shift = tf.Variable([0.5, -0.5])

  def __call__(self, x):
    return x * 0. + self.shift, None


def test_a_tf_module_conditioner_is_tracked():
  layer = bijectors.AffineCoupling(bijectors.alternating_mask(2, 0),
                                   ShiftModule(), additive=True)
  assert len(layer.trainable_variables) == 1
  np.testing.assert_allclose(layer.forward(tf.zeros([1, 2])), [[0., -0.5]])


def eight_gaussians_with_labels(size, seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 8, size)
  angles = labels * np.pi / 4
  means = 4. * np.stack([np.cos(angles), np.sin(angles)], -1)
  return ((means + 0.5 * rng.standard_normal((size, 2))).astype(np.float32),
          labels.astype(np.int32))


def test_flow_model_fits_a_conditional_flow_on_x_and_labels():
  points, labels = eight_gaussians_with_labels(4096, 0)
  keras.utils.set_random_seed(0)
  model = tf_realnvp.FlowModel(kind='realnvp', event_shape=(2,), settings=dict(
      num_layers=4, hidden_units=(32, 32), num_classes=8,
      conditional_prior=True))
  model.compile(optimizer=keras.optimizers.Adam(3e-3))
  before = model.evaluate(points, labels, batch_size=512, verbose=0,
                          return_dict=True)['nll_nats']
  model.fit(points, labels, batch_size=256, epochs=3, verbose=0)
  after = model.evaluate(points, labels, batch_size=512, verbose=0,
                         return_dict=True)['nll_nats']
  assert after < before - 1.
  np.testing.assert_allclose(
      model((points[:4], labels[:4])),
      model.flow.log_prob(points[:4],
                          bijector_kwargs=kwargs(labels[:4])), rtol=1e-6)
  with pytest.raises(ValueError, match='give fit/evaluate \\(x, y\\)'):
    model.fit(points, batch_size=256, epochs=1, verbose=0)


# TFP conventions (the flow as a TFP distribution).


def test_the_default_name_works_inside_a_joint_distribution():
  tfd = tfp.distributions
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2)
  joint = tfd.JointDistributionSequential(
      [flow, lambda z: tfd.Independent(tfd.Normal(z, 1.), 1)])
  z, x = joint.sample(3, seed=1)
  expected = flow.log_prob(z) + tfd.Independent(tfd.Normal(z, 1.), 1).log_prob(x)
  np.testing.assert_allclose(joint.log_prob([z, x]), expected, rtol=1e-6)
  assert flow.name == 'realnvp'
  named = tf_realnvp.RealNVP((2,), num_coupling_layers=2, name='prior')
  with pytest.raises(ValueError, match='Inconsistent names'):
    tfd.JointDistributionSequential(
        [named, lambda z: tfd.Normal(z, 1.)]).log_prob_parts([z, x])


@pytest.mark.parametrize('events', [
    tf.constant([[1, 2]]), np.array([[1, 2]], np.int64),
    tf.constant([[1., 2.]], tf.float64)], ids=['tf_int32', 'np_int64',
                                               'tf_float64'])
@pytest.mark.parametrize('method', ['log_prob', 'prob'])
def test_events_of_another_dtype_are_refused_naming_the_dtype(events, method):
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2)
  with pytest.raises(TypeError, match='events must be float32, got'):
    getattr(flow, method)(events)
  # Python values and float arrays are converted, as TFP does.
  np.testing.assert_allclose(flow.log_prob([[1., 2.]]),
                             flow.log_prob(np.array([[1., 2.]])), rtol=1e-6)


@pytest.mark.parametrize('method', ['cdf', 'quantile', 'survival_function',
                                    'entropy', 'mean', 'mode', 'stddev',
                                    'variance', 'covariance'])
def test_quantities_without_a_closed_form_say_so(method):
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2)
  args = [tf.zeros([1, 2])] if method in (
      'cdf', 'quantile', 'survival_function') else []
  with pytest.raises(NotImplementedError,
                     match='realnvp: a normalizing flow has no closed-form'):
    getattr(flow, method)(*args)


# train.py --conditional.


def test_a_conditional_run_beats_the_unconditional_one_and_serves_labels(
    tmp_path):
  # Affine couplings: they trace in half the time of the 2-D default's splines.
  common = dict(dataset='8gaussians', flow='realnvp', batch_size=256,
                train_steps=100, num_coupling_layers=4, hidden_units=(64, 64),
                eval_every=100, checkpoint_every=100, learning_rate=3e-3,
                warmup_steps=0, lr_decay='none', seed=0)
  conditional = training.train_and_evaluate(experiment.resolve(
      config_lib.Config(model_dir=str(tmp_path / 'conditional'),
                        conditional=True, **common)))
  unconditional = training.train_and_evaluate(experiment.resolve(
      config_lib.Config(model_dir=str(tmp_path / 'plain'), export=False,
                        **common)))
  # Knowing which Gaussian is worth up to log 8 = 2.08 nats.
  assert (conditional['test_nll_nats']
          < unconditional['test_nll_nats'] - 1.0)
  evaluated = evaluation.evaluate(str(tmp_path / 'conditional'))
  np.testing.assert_allclose(evaluated['test_nll_nats'],
                             conditional['test_nll_nats'], rtol=1e-5)
  assert os.path.exists(evaluated['samples'])
  served = tf.saved_model.load(str(tmp_path / 'conditional' / 'saved_model'))
  assert int(served.num_classes) == 8
  # The samples of class k lie around the k-th mean.
  for k in range(8):
    samples = served.sample_with_temperature(100, 1., [1, 2], k).numpy()
    mean = 4. * np.array([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)])
    assert np.mean(np.linalg.norm(samples - mean, axis=-1) < 1.5) > 0.8, k


@pytest.mark.parametrize('settings, message', [
    (dict(flow='maf'), '--conditional applies to realnvp, nice, nsf and glow'),
    (dict(flow='ffjord'), '--conditional applies to realnvp, nice, nsf and glow'),
])
def test_conditional_settings_that_cannot_work_are_config_errors(settings,
                                                                 message):
  with pytest.raises(experiment.ConfigError, match=message):
    experiment.resolve(config_lib.Config(dataset='8gaussians',
                                         conditional=True, **settings))


def test_a_conditional_image_run_draws_a_row_per_class(tmp_path):
  with tfds.testing.mock_data(num_examples=8):
    config = config_lib.Config(
        dataset='mnist', conditional=True, model_dir=str(tmp_path / 'run'),
        **TINY_IMAGE_MODEL, batch_size=4,
        train_steps=2, eval_batches=1)
    result = training.train_and_evaluate(experiment.resolve(config))
    evaluated = evaluation.evaluate(str(tmp_path / 'run'), eval_batches=1)
  assert np.isfinite(result['test_bits_per_dim'])
  np.testing.assert_allclose(evaluated['test_bits_per_dim'],
                             result['test_bits_per_dim'], rtol=1e-5)
  grid = tf.io.decode_png(tf.io.read_file(evaluated['samples']))
  assert grid.shape[0] == 10 * 28  # A row of 28x28 samples per digit.
  served = tf.saved_model.load(str(tmp_path / 'run' / 'saved_model'))
  assert int(served.num_classes) == 10
  assert served.signatures['serving_default'].structured_input_signature[
      1].keys() == {'x', 'label'}


def test_conditional_needs_a_labelled_dataset(tmp_path):
  path = str(tmp_path / 'images.npz')
  np.savez(path, train=np.zeros((4, 8, 8, 1), np.uint8),
           test=np.zeros((4, 8, 8, 1), np.uint8))
  with pytest.raises(experiment.ConfigError,
                     match='--conditional needs class labels'):
    experiment.resolve(config_lib.Config(dataset=f'npz:{path}',
                                         conditional=True))
