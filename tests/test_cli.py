"""train.py and evaluate.py as a user runs them: errors, defaults, console."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from runs import resolve_as_train_py

from tf_realnvp import config as config_lib
from tf_realnvp import data as data_lib
from tf_realnvp import evaluation
from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.config import presets

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A line of TensorFlow's C++ logging ("I0000 00:00:17... port.cc:153] ...")
# or absl's banner before it.
# The flow train.py trains on images unless told otherwise.
IMAGE_FLOW = presets.IMAGE_DEFAULTS['flow']
CPP_LOG_LINE = re.compile(r'^[IWEF]\d{4} |absl::InitializeLog', re.MULTILINE)


def run(args, tmp_path, timeout=300, **kwargs):
  """Runs a script of the repository as a user would, TensorFlow's log level
  untouched, datasets looked up in an empty folder."""
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  env['TFDS_DATA_DIR'] = str(tmp_path / 'tensorflow_datasets')
  return subprocess.run([sys.executable] + args, cwd=REPO_ROOT, text=True,
                        timeout=timeout, env=env,
                        **{'capture_output': True, **kwargs})


# What a setting that cannot work prints, checked in this process: the
# message `experiment.resolve` raises before any data is read, one line and
# exit code 2 through `console.exit_on_errors`, as train.py wraps `main`.
# Each case's Config fields are the train.py flags a user would give.
@pytest.mark.parametrize('settings, message', [
    (dict(dataset='nosuch'), "--dataset=nosuch: Unknown dataset"),
    (dict(num_scales=3),
     '--num_scales does not apply to nsf on moons'),
    (dict(dataset='cifar10', num_scales=6, download=False),
     '--num_scales: 32x32 images are too small for num_scales=6'),
    (dict(dataset='mnist', hidden_units=(8,), download=False),
     f'--hidden_units does not apply to {IMAGE_FLOW} on mnist'),
    # Learned dequantization is of 8-bit pixels; 2-D data are continuous.
    (dict(dataset='8gaussians', dequantization='variational'),
     '--dequantization does not apply to nsf on 8gaussians'),
], ids=['dataset', 'num_scales', 'num_scales_too_large', 'hidden_units',
        'dequantization'])
def test_a_bad_setting_is_one_line_and_exit_code_2_before_any_data(
    tmp_path, capsys, settings, message):
  config = config_lib.Config(model_dir=str(tmp_path / 'run'), **settings)
  code, stderr = resolve_as_train_py(config, {experiment.ConfigError: 2},
                                     capsys)
  assert code == 2
  assert stderr.startswith('error: ') and message in stderr
  assert stderr.count('\n') == 1, stderr
  assert not (tmp_path / 'run').exists()


# The same through the scripts themselves, one process for each: absl's
# flags, the exit code each script maps the error to, nothing else printed;
# datasets are looked up in an empty folder, so reading them would fail.
@pytest.mark.parametrize('args, message', [
    (['train.py', '--dataset=mnist', '--hidden_units=8', '--download=false'],
     f'--hidden_units does not apply to {IMAGE_FLOW} on mnist'),
    (['evaluate.py', '--model_dir=nowhere', '--temperature=0'],
     '--temperature must be positive'),
], ids=['train.py', 'evaluate.py'])
def test_a_bad_flag_of_a_script_is_one_line_and_exit_code_2(
    tmp_path, args, message):
  result = run(args, tmp_path)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.startswith('error: ') and message in result.stderr
  assert result.stderr.count('\n') == 1, result.stderr


def test_the_headline_command_reaches_the_dataset_message(tmp_path):
  """`python train.py --dataset=cifar10` with no data on disk and no internet
  says how to provide the data, without a traceback."""
  result = run(['train.py', '--dataset=cifar10'], tmp_path)
  assert result.returncode == 1
  assert "'cifar10' is not prepared" in result.stderr
  assert 'tfds build cifar10' in result.stderr
  assert 'Traceback' not in result.stderr


def test_the_headline_command_trains_for_the_default_length(
    tmp_path, monkeypatch):
  """With the data (mocked) and no length given, CIFAR-10 trains 100 epochs:
  interrupted after its first step, the run on disk says so."""
  config = config_lib.Config(dataset='cifar10', model_dir=str(tmp_path),
                             num_res_blocks=1, num_filters=4)
  steps_taken = []
  take_step = training.Training._advance

  def one_step_then_ctrl_c(self):
    steps_taken.append(self.total_steps)
    os.kill(os.getpid(), signal.SIGINT)  # The run stops after this step.
    return take_step(self)
  monkeypatch.setattr(training.Training, '_advance', one_step_then_ctrl_c)
  with tfds.testing.mock_data(num_examples=2 * presets.IMAGE_DEFAULTS['batch_size']):
    with pytest.raises(training.TrainingInterrupted, match='SIGINT at step 1'):
      training.train_and_evaluate(experiment.resolve(config))
  assert steps_taken == [100 * 2]  # 100 epochs of 2 batches.
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert (saved['epochs'], saved['batch_size']) == (100, 64)
  latest = tf.train.latest_checkpoint(str(tmp_path / 'checkpoints'))
  assert latest.endswith('ckpt-1')


def test_train_then_evaluate_end_to_end_in_plain_lines(tmp_path):
  """train.py with its output to a file: plain lines, no TensorFlow logs; the
  flow learned, its samples and export are written; evaluate.py reports
  what train.py printed."""
  model_dir = tmp_path / 'run'
  with open(tmp_path / 'stdout.txt', 'w') as stdout:
    result = run(['train.py', '--dataset=moons', '--train_steps=100',
                  '--warmup_steps=5', '--eval_every=50',
                  '--num_coupling_layers=4', '--hidden_units=32,32',
                  f'--model_dir={model_dir}'],
                 tmp_path, capture_output=False, stdout=stdout,
                 stderr=subprocess.PIPE)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (model_dir / 'saved_model').exists()  # The export logs the most.
  assert (model_dir / 'samples' / 'step_100.png').stat().st_size > 1000
  printed = (tmp_path / 'stdout.txt').read_text()
  assert printed.startswith('step   0/100') and 'step=100' in printed
  assert '\x1b' not in printed and '\r' not in printed and '\b' not in printed
  assert not CPP_LOG_LINE.search(printed + result.stderr), (
      printed + result.stderr)
  assert result.stderr == ''
  saved = json.loads((model_dir / 'config.json').read_text())
  assert saved['given'] == ['dataset', 'eval_every', 'hidden_units',
                            'model_dir', 'num_coupling_layers', 'train_steps',
                            'warmup_steps']

  evaluated = run(['evaluate.py', f'--model_dir={model_dir}'], tmp_path)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  eval_json = json.loads((model_dir / 'eval.json').read_text())
  assert eval_json['step'] == 100
  test_points = data_lib.sample_toy('moons', 10000, seed=1)
  # The flow starts as the identity, a standard Normal: training must have
  # lowered the test NLL well below that.
  normal_nll = np.mean(0.5 * np.sum(test_points**2, axis=1) + np.log(2 * np.pi))
  assert eval_json['test_nll_nats'] < normal_nll - 0.5
  final = float(re.search(r'test_nll_nats=([-0-9.e]+)', printed)[1])
  assert final == pytest.approx(eval_json['test_nll_nats'], abs=1e-4)
  # The export agrees with the restored flow (that it reloads in a process
  # without tf_realnvp, tests/test_saved_model.py checks for every export).
  exported = tf.saved_model.load(str(model_dir / 'saved_model'))
  _, flow, _ = evaluation.restore_flow(str(model_dir))
  np.testing.assert_allclose(exported.log_prob(test_points[:100]),
                             flow.log_prob(test_points[:100]), rtol=1e-5)
