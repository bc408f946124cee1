"""SavedModel export: reloads and runs without tf_realnvp; checks its inputs;
written atomically."""

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import tf_realnvp
from tf_realnvp import export

RELOAD_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.log_prob(x).numpy())
np.save(sys.argv[4], model.sample_with_temperature(
    4, 0.7, tf.constant([1, 2])).numpy())
assert model.sample(3).shape[0] == 3
assert sorted(model.signatures) == ['log_prob', 'sample', 'sample_with_temperature']
assert list(model.event_shape.numpy()) == list(x.shape[1:])
assert 'tf_realnvp' not in sys.modules
"""


def perturbed(flow):
  rng = np.random.RandomState(0)
  for v in flow.trainable_variables:
    v.assign(rng.normal(0., 0.1, v.shape).astype(np.float32))
  return flow


def reload_elsewhere(export_dir, x, tmp_path):
  """Runs the SavedModel in a process that never imports tf_realnvp."""
  paths = [str(tmp_path / name) for name in ('x.npy', 'lp.npy', 's.npy')]
  np.save(paths[0], x)
  run = subprocess.run([sys.executable, '-c', RELOAD_SCRIPT, export_dir] + paths,
                       capture_output=True, text=True, cwd=str(tmp_path),
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert run.returncode == 0, run.stderr[-3000:]
  return np.load(paths[1]), np.load(paths[2])


@pytest.mark.parametrize('event_shape', [(8, 8, 3), (2,)])
def test_reloaded_model_matches_live_flow_without_the_package(event_shape,
                                                              tmp_path):
  flow = perturbed(tf_realnvp.RealNVP(event_shape, num_res_blocks=1,
                                      num_filters=8, hidden_units=(16,)))
  export_dir = export.export_saved_model(flow, str(tmp_path / 'model'))
  low, high = (0., 256.) if len(event_shape) == 3 else (-3., 3.)
  x = np.random.RandomState(1).uniform(low, high, (5,) + event_shape)
  log_prob, samples = reload_elsewhere(export_dir, x.astype(np.float32),
                                       tmp_path)
  np.testing.assert_allclose(log_prob, flow.log_prob(x.astype(np.float32)),
                             rtol=1e-5)
  live = export.ExportedFlow(flow).sample_with_temperature(
      4, 0.7, tf.constant([1, 2]))
  np.testing.assert_allclose(samples, live, rtol=1e-5, atol=1e-4)


def test_failed_export_keeps_the_previous_one(tmp_path, monkeypatch):
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2, hidden_units=(8,))
  export_dir = str(tmp_path / 'model')
  export.export_saved_model(flow, export_dir)
  before = sorted(os.listdir(export_dir))
  save = tf.saved_model.save

  def save_then_fail(module, path, **kwargs):
    save(module, path, **kwargs)
    raise KeyboardInterrupt('interrupted while exporting')
  monkeypatch.setattr(tf.saved_model, 'save', save_then_fail)
  with pytest.raises(KeyboardInterrupt):
    export.export_saved_model(flow, export_dir)
  assert sorted(os.listdir(export_dir)) == before
  assert os.listdir(tmp_path) == ['model']  # no temporary directory left
  tf.saved_model.load(export_dir)


def test_export_replaces_an_older_one(tmp_path):
  export_dir = str(tmp_path / 'model')
  for layers in (2, 4):
    flow = tf_realnvp.RealNVP((2,), num_coupling_layers=layers,
                              hidden_units=(8,))
    export.export_saved_model(flow, export_dir)
  saved = [name for name, _ in tf.train.list_variables(
      os.path.join(export_dir, 'variables', 'variables'))
           if name != '_CHECKPOINTABLE_OBJECT_GRAPH']
  assert len(saved) == len(flow.variables) + 2  # and the two shape facts
  assert os.listdir(tmp_path) == ['model']


@pytest.fixture(scope='module')
def reloaded(tmp_path_factory):
  """Reloaded SavedModels of a tiny image flow and a 2-D flow, by kind."""
  models = {}
  for kind, event_shape in (('image', (8, 8, 3)), ('vector', (2,))):
    flow = perturbed(tf_realnvp.RealNVP(
        event_shape, num_res_blocks=1, num_filters=8, hidden_units=(16,),
        validate_args=False))  # As the trainer builds it.
    path = export.export_saved_model(
        flow, str(tmp_path_factory.mktemp(kind) / 'model'))
    models[kind] = tf.saved_model.load(path)
  return models


@pytest.mark.parametrize('kind', ['image', 'vector'])
def test_empty_batches_give_empty_results(reloaded, kind):
  model = reloaded[kind]
  event_shape = tuple(model.event_shape.numpy())
  assert model.log_prob(tf.zeros((0,) + event_shape)).shape == (0,)
  assert model.sample(0).shape == (0,) + event_shape
  assert model.sample_with_temperature(
      0, 0.5, tf.constant([1, 2])).shape == (0,) + event_shape


@pytest.mark.parametrize('value', [-0.5, 256., 1e9, np.nan, np.inf, -np.inf])
def test_log_prob_refuses_pixels_outside_0_to_256(reloaded, value):
  x = np.full((3, 8, 8, 3), 100., np.float32)
  x[1, 2, 3, 0] = value
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=re.escape('pixel values must lie in [0, 256)')):
    reloaded['image'].log_prob(x)
  x[1, 2, 3, 0] = 255.999
  x[0, 0, 0, 0] = 0.
  assert np.all(np.isfinite(reloaded['image'].log_prob(x)))


@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_vector_log_prob_refuses_non_finite_events(reloaded, value):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='events must be finite'):
    reloaded['vector'].log_prob(np.array([[0., 1.], [value, 0.]], np.float32))
  assert np.all(np.isfinite(reloaded['vector'].log_prob(
      np.array([[1e3, -1e3]], np.float32))))


@pytest.mark.parametrize('temperature', [0., -0.7, np.nan, np.inf])
def test_temperature_must_be_positive_and_finite(reloaded, temperature):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='temperature must be positive and finite'):
    reloaded['image'].sample_with_temperature(2, temperature,
                                              tf.constant([1, 2]))


@pytest.mark.parametrize('kind, max_samples', [('image', 2**20 // 192),
                                               ('vector', 2**19)])
def test_sample_counts_are_bounded_and_refused_before_allocating(
    reloaded, kind, max_samples):
  """n = 1e8 is refused at once, with the limit and what to do instead."""
  model = reloaded[kind]
  assert int(model.max_samples) == max_samples
  draws = [model.sample,
           lambda n: model.sample_with_temperature(n, 1., tf.constant([1, 2]))]
  for draw in draws:
    with pytest.raises(tf.errors.InvalidArgumentError, match='at least 0'):
      draw(-1)
    for n in (max_samples + 1, 10**8, 2**31 - 1):
      start = time.perf_counter()
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match=f'at most {max_samples} per call.*several'):
        draw(n)
      assert time.perf_counter() - start < 5.
  assert model.sample(3).shape[0] == 3


def test_export_removes_leftovers_of_dead_processes_only(tmp_path):
  """`model.tmp-PID` / `.old-PID` of a process that is gone are removed
  before writing; those of a live process are its export in progress."""
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  live = subprocess.Popen(['sleep', '120'])
  try:
    export_dir = str(tmp_path / 'model')
    stale = [f'{export_dir}.tmp-{dead.pid}', f'{export_dir}.old-{dead.pid}']
    kept = [f'{export_dir}.tmp-{live.pid}', f'{export_dir}.old-{live.pid}',
            f'{export_dir}.tmp-notapid',
            str(tmp_path / f'other.tmp-{dead.pid}')]
    for path in stale + kept:
      os.makedirs(os.path.join(path, 'variables'))
    flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2, hidden_units=(8,))
    export.export_saved_model(flow, export_dir)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['model'] + [os.path.basename(path) for path in kept])
  finally:
    live.kill()
    live.wait()
