"""The flows of `tf_realnvp.flows` and the benchmark that compares them."""

import json
import math

import bijector_checks
import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from benchmarks import compare_flows
import tf_realnvp
from tf_realnvp import flows
from tf_realnvp.bijectors.actnorm import ActNorm
from tf_realnvp.serving import saved_model

# Small flows, float64 so the checks can be tight; FFJORD's solver tolerances
# bound how well its two directions agree.
SETTINGS = {
    'realnvp': dict(num_layers=2, hidden_units=(8,)),
    'nice': dict(num_layers=2, hidden_units=(8,)),
    'nsf': dict(num_layers=2, hidden_units=(8,), spline_bins=4,
                spline_bound=3.),
    'maf': dict(num_layers=2, hidden_units=(8,)),
    'iaf': dict(num_layers=2, hidden_units=(8,)),
    'glow': dict(num_layers=2, hidden_units=(8,)),
    'ffjord': dict(hidden_units=(8,), rtol=1e-8, atol=1e-10),
}


def small_flow(kind):
  """A small float64 flow with its weights moved off their initialisation.

  The couplings start as the identity: the perturbation makes every layer
  act (and keeps MADE's autoregressive masks).
  """
  flow = flows.make_flow(kind, dtype=tf.float64, **SETTINGS[kind])
  return bijector_checks.perturb(flow, scale=0.2)


class TestFlowBijectorProperties(bijector_checks.BijectorProperties):
  """The bijector properties of TFP's autoregressive flows; FFJORD's below,
  and the coupling flows' (realnvp, nice, nsf, glow) in
  `test_tfp_contract.py`."""
  CASES = {kind: bijector_checks.Case(
      lambda kind=kind: small_flow(kind).bijector, (2,))
           for kind in ('maf', 'iaf')}


def test_ffjord_inverts_and_its_log_det_matches_autodiff_jacobian():
  """FFJORD's log-det, the integral of -tr(df/dx), against the Jacobian.

  The Jacobian of the ODE solution comes from one backward (adjoint) solve
  per output; vectorizing them with pfor, as `BijectorProperties` does,
  takes minutes.
  """
  bijector = small_flow('ffjord').bijector
  z = tf.random.stateless_normal((2, 2), [1, 1], dtype=tf.float64)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(z)
    x = bijector.forward(tf.identity(z))
  jacobian = tape.batch_jacobian(x, z, experimental_use_pfor=False).numpy()
  _, expected = np.linalg.slogdet(jacobian)
  fldj = bijector.forward_log_det_jacobian(tf.identity(z), event_ndims=1)
  assert np.all(np.abs(expected) > 1e-2)
  np.testing.assert_allclose(fldj, expected, rtol=1e-5)
  ildj = bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
  np.testing.assert_allclose(ildj, -fldj, rtol=1e-5)
  np.testing.assert_allclose(bijector.inverse(tf.identity(x)), z, rtol=1e-6,
                             atol=1e-8)
  # One event alone, and a batch of two axes, give the batch's results.
  np.testing.assert_allclose(bijector.forward(z[0]), x[0], rtol=1e-6)
  np.testing.assert_allclose(bijector.forward(tf.reshape(z[:2], [1, 2, 2])),
                             tf.reshape(x[:2], [1, 2, 2]), rtol=1e-6)


@pytest.mark.parametrize('kind', flows.FLOWS)
def test_log_prob_and_samples_are_finite(kind):
  flow = small_flow(kind)
  assert flow.event_shape == (2,)
  x = tf.random.stateless_normal((5, 2), [1, 2], dtype=tf.float64)
  log_prob = flow.log_prob(x).numpy()
  assert log_prob.shape == (5,) and np.all(np.isfinite(log_prob))
  samples = flow.sample(7, seed=tf.constant([3, 4])).numpy()
  assert samples.shape == (7, 2) and np.all(np.isfinite(samples))


@pytest.mark.parametrize('kind', flows.FLOWS)
def test_density_integrates_to_one_and_matches_samples(kind):
  """Midpoint sum of p on a grid; the mass of a quadrant against samples.

  The grid holds cell centres, so the quadrant's cells end on the axes.
  """
  flow = small_flow(kind)
  edges = np.linspace(-8., 8., 81 if kind == 'ffjord' else 161)
  axis = (edges[1:] + edges[:-1]) / 2
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
  density = np.exp(flow.log_prob(grid).numpy())
  cell = (axis[1] - axis[0]) ** 2
  assert density.sum() * cell == pytest.approx(1., abs=1e-2)
  samples = flow.sample(4000, seed=tf.constant([5, 6])).numpy()
  mass = density[(grid[:, 0] < 0.) & (grid[:, 1] < 0.)].sum() * cell
  share = np.mean((samples[:, 0] < 0.) & (samples[:, 1] < 0.))
  assert share == pytest.approx(mass, abs=4 * math.sqrt(0.25 / 4000) + 1e-2)


def expected_variable_count(kind, flow):
  """Trainable variables of the flow, counted layer by layer."""
  settings = SETTINGS[kind]
  dense_layers = len(settings['hidden_units']) + 1  # kernel and bias each
  if kind in ('maf', 'iaf'):
    return settings['num_layers'] * 2 * dense_layers
  if kind == 'ffjord':
    return 2 * dense_layers
  couplings = tf_realnvp.couplings(flow)
  assert len(couplings) == settings['num_layers']
  count = sum(len(c.conditioner.trainable_weights) for c in couplings)
  # Glow: ActNorm's loc and log-scale and the 1x1 mixing per step; NICE: the
  # final diagonal scaling.
  return count + {'glow': 3 * settings['num_layers'], 'nice': 1}.get(kind, 0)


@pytest.mark.parametrize('kind', flows.FLOWS)
def test_every_layer_trains(kind):
  """Each weight of each layer is tracked once and gets a gradient."""
  flow = small_flow(kind)
  variables = flow.trainable_variables
  assert len({id(v) for v in variables}) == len(variables)
  assert len(variables) == expected_variable_count(kind, flow)
  x = tf.random.stateless_normal((8, 2), [7, 8], dtype=tf.float64)
  with tf.GradientTape() as tape:
    nll = -tf.reduce_mean(flow.log_prob(x))
  gradients = tape.gradient(nll, variables)
  assert all(g is not None for g in gradients)
  assert all(np.any(g != 0.) for g in gradients if g.shape.num_elements() > 1)


@pytest.mark.parametrize('kind, fast', [('maf', 'log_prob'), ('iaf', 'sample')])
def test_autoregressive_flows_are_fast_in_their_direction(kind, fast):
  """One network pass per layer one way, one per entry (of 4) the other way."""
  flow = flows.make_flow(kind, event_shape=(4,), num_layers=1,
                         hidden_units=(8,))
  made, = [m for m in flow.submodules
           if isinstance(m, tfp.bijectors.AutoregressiveNetwork)]
  calls = []
  call = made.call
  made.call = lambda x: calls.append(1) or call(x)
  flow.log_prob(tf.zeros((3, 4)))
  passes = {'log_prob': len(calls)}
  flow.sample(3, seed=tf.constant([0, 1]))
  passes['sample'] = len(calls) - passes['log_prob']
  slow, = {'log_prob', 'sample'} - {fast}
  assert passes[fast] <= 2 and passes[slow] >= 4, passes


def test_glow_actnorm_initializes_on_the_first_log_prob():
  flow = flows.make_flow('glow', num_layers=1, hidden_units=(8,))
  x = tf.random.stateless_normal((256, 2), [9, 9]) * [3., 0.5] + [1., -2.]
  flow.log_prob(x)
  actnorm, = [m for m in flow.submodules if isinstance(m, ActNorm)]
  assert actnorm.initialized
  np.testing.assert_allclose(actnorm.loc, tf.reduce_mean(x, 0), rtol=1e-5)


@pytest.mark.parametrize('kind', ['maf', 'iaf', 'glow'])
def test_saved_model_gives_the_flows_log_prob_and_samples(kind, tmp_path):
  flow = flows.make_flow(kind, num_layers=2, hidden_units=(8,))
  x = tf.random.stateless_normal((5, 2), [2, 3])
  log_prob = flow.log_prob(x)
  reloaded = tf.saved_model.load(
      saved_model.export_saved_model(flow, str(tmp_path / kind)))
  np.testing.assert_allclose(reloaded.log_prob(x), log_prob, rtol=1e-6)
  np.testing.assert_allclose(
      reloaded.sample_with_temperature(4, 1., [5, 6]),
      flow.bijector.forward(tf.random.stateless_normal((4, 2), [5, 6])),
      rtol=1e-5)


def test_keras_seed_fixes_the_initial_weights():
  def weights(kind, seed):
    keras.utils.set_random_seed(seed)
    return [v.numpy() for v in flows.make_flow(
        kind, **SETTINGS[kind]).trainable_variables]

  for kind in flows.FLOWS:
    first, again, other = weights(kind, 1), weights(kind, 1), weights(kind, 2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)), kind
    assert not all(np.array_equal(a, b) for a, b in zip(first, other)), kind


def test_bad_kind_or_event_shape_raises():
  with pytest.raises(ValueError, match='kind must be one of'):
    flows.make_flow('spline')
  with pytest.raises(ValueError, match='vectors'):
    flows.make_flow('maf', event_shape=(4, 4, 3))
  with pytest.raises(ValueError, match='ffjord.*does not take num_layers'):
    flows.make_flow('ffjord', num_layers=3)
  with pytest.raises(ValueError, match='realnvp.*does not take num_scales'):
    flows.make_flow('realnvp', num_scales=3)


def test_compare_flows_writes_table_json_and_figure(tmp_path):
  rows, by_dimension = compare_flows.compare(
      ['realnvp'], ['8gaussians'], out_dir=str(tmp_path), seed=0,
      dimension_kinds=['iaf'], dimensions=['3'], train_steps=3,
      batch_size=16, warmup_steps=0)
  with open(tmp_path / 'compare_flows.json') as f:
    saved = json.load(f)
  assert saved['rows'] == rows and saved['by_dimension'] == by_dimension
  timing, = by_dimension
  assert (timing['flow'], timing['dims']) == ('iaf', 3)
  assert timing['sample_seconds'] > 0 and timing['log_prob_seconds'] > 0
  assert [(r['flow'], r['dataset']) for r in rows] == [
      ('realnvp', '8gaussians')]
  for row in rows:
    for key in ('test_nll', 'gap_to_true_density', 'train_seconds',
                'sample_seconds', 'log_prob_seconds'):
      assert np.isfinite(row[key]), key
    assert row['parameters'] > 0
    # The true density has the lowest expected NLL.
    assert row['gap_to_true_density'] > 0.
  table = (tmp_path / 'compare_flows.md').read_text()
  assert '| realnvp | 8gaussians |' in table and '| iaf | 3 |' in table
  png = (tmp_path / 'densities.png').read_bytes()
  assert png.startswith(b'\x89PNG')
