"""SavedModel export: reloads and runs without tf_realnvp; written atomically."""

import os
import subprocess
import sys

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
  assert len(saved) == len(flow.variables) + 1  # and the event shape
  assert os.listdir(tmp_path) == ['model']
