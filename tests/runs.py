"""Shared by the test files: a small run on two moons, its training and the
arrays it checkpointed; settings resolved as train.py resolves them."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp import config as config_lib
from tf_realnvp import console
from tf_realnvp import training
from tf_realnvp.config import experiment

# A one-scale model of the paper's flow, for the image runs whose property
# does not depend on the kind of flow: its affine couplings trace in about
# half the time of the default's Glow steps. The default itself trains in
# test_loop's CIFAR-10 test and in test_cli's.
TINY_IMAGE_MODEL = dict(flow='realnvp', num_scales=1, num_res_blocks=1,
                        num_filters=4)

# No warmup, decay or averaging, whatever the defaults: tests that change
# --train_steps on resume need that, the others ask for a recipe explicitly.
PLAIN_RECIPE = dict(learning_rate=1e-3, warmup_steps=0, lr_decay='none',
                    ema_decay=0.)


def small_config(model_dir, **overrides):
  """A small RealNVP on two moons: its affine couplings trace in half the
  time of the 2-D default's splines (`tests/test_cli.py` trains those)."""
  values = dict(dataset='moons', flow='realnvp', model_dir=str(model_dir),
                batch_size=64, train_steps=40, num_coupling_layers=4,
                hidden_units=(32, 32), eval_every=20, checkpoint_every=20,
                log_every=10, eval_batches=2, export=False, **PLAIN_RECIPE)
  values.update(overrides)
  return config_lib.Config(**values)


def train(config, **kwargs):
  return training.train_and_evaluate(experiment.resolve(config), **kwargs)


def checkpoint_arrays(model_dir):
  """The flow's, optimizer's, averages' and step's arrays in the latest
  checkpoint."""
  path = tf.train.latest_checkpoint(os.path.join(model_dir, 'checkpoints'))
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name, _ in tf.train.list_variables(path)
          if name.startswith(('flow/', 'optimizer/', 'averages/', 'step/'))}


def assert_same_weights(expected, actual):
  assert expected.keys() == actual.keys() and len(expected) > 10
  for name in expected:
    np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6,
                               atol=1e-7, err_msg=name)


def logged_scalars(log_dir, tag):
  """{step: value} of the scalar `tag` in the TensorBoard logs in `log_dir`."""
  values = {}
  for path in tf.io.gfile.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def resolve_as_train_py(config, errors, capsys):
  """`(exit code, stderr)` of resolving `config` in a `main` wrapped by
  `console.exit_on_errors(main, errors)`, as train.py wraps its own."""
  def main(argv):
    del argv
    experiment.resolve(config)
    raise AssertionError('resolved a setting that cannot work')
  with pytest.raises(SystemExit) as exit_info:
    console.exit_on_errors(main, errors)(['train.py'])
  return exit_info.value.code, capsys.readouterr().err
