"""Tests of console: the verbosity arguments, the progress line, the error exit
and what TensorFlow prints: at verbosity 0 its Python loggers, in process
(train.py's run in test_cli shows its C++ side silent), at 2 in a fresh
interpreter."""

import io
import logging
import os
import subprocess
import sys
import types

import numpy as np
from absl import logging as absl_logging
import pytest

from tf_realnvp import console

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Terminal(io.StringIO):

  def isatty(self):
    return True


class Clock:
  """A `time.monotonic` that reads the `now` a test sets."""

  def __init__(self):
    self.now = 0.

  def __call__(self):
    return self.now


@pytest.mark.parametrize('argv, verbosity', [
    ([], 0), (['-v'], 1), (['-vv'], 2), (['--verbosity=2'], 2),
    (['--verbosity', '1'], 1), (['--verbosity=7'], 2), (['--verbosity=-1'], 0),
])
def test_split_verbosity_reads_each_form_and_removes_it(argv, verbosity):
  args = ['train.py', '--dataset=mnist', *argv, '--batch_size', '8']
  assert console.split_verbosity(args) == (
      verbosity, ['train.py', '--dataset=mnist', '--batch_size', '8'])


def test_split_verbosity_leaves_arguments_after_double_dash():
  assert console.split_verbosity(['train.py', '--', '-v']) == (
      0, ['train.py', '--', '-v'])


def test_split_verbosity_rejects_a_non_number_with_exit_code_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    console.split_verbosity(['train.py', '--verbosity=loud'])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      "error: --verbosity takes 0, 1 or 2, got 'loud'.\n")


def test_progress_in_a_file_writes_plain_lines():
  stream = io.StringIO()
  progress = console.Progress(100, stream=stream, interval_s=0)
  for step in range(0, 101, 50):
    progress.update(step, loss=np.float32(1.23456), rate=10,
                    skipped=np.int64(0))
  progress.close()
  text = stream.getvalue()
  assert '\x1b' not in text and '\r' not in text and '\b' not in text
  lines = text.splitlines()
  assert len(lines) == 4  # Steps 0, 50, 100, and the close.
  assert all(line.startswith('step ') for line in lines)
  assert lines[1].endswith(' loss=1.2346 rate=10 skipped=0')


def test_progress_in_a_file_writes_at_the_interval_and_at_close(monkeypatch):
  clock = Clock()
  monkeypatch.setattr(console, 'time', types.SimpleNamespace(monotonic=clock))
  stream = io.StringIO()
  with console.Progress(100, stream=stream, interval_s=30) as progress:
    for step in range(1, 101):
      clock.now = float(step)  # A step takes 1 s.
      progress.update(step)
  lines = stream.getvalue().splitlines()
  # The first update, then one line every 30 s, and the last state at close.
  assert [line.split()[1] for line in lines] == [
      '1/100', '31/100', '61/100', '91/100', '100/100']
  assert lines[-1] == 'step 100/100 in 1:39'


def test_progress_eta_counts_only_the_steps_of_this_process(monkeypatch):
  clock = Clock()
  monkeypatch.setattr(console, 'time', types.SimpleNamespace(monotonic=clock))
  stream = io.StringIO()
  progress = console.Progress(1000, stream=stream, interval_s=0)
  progress.update(900)  # Resumed at step 900.
  clock.now = 10.
  progress.update(910)  # 10 steps in 10 s: 90 steps left take 1:30.
  assert stream.getvalue().splitlines() == [
      'step  900/1000 ETA ?', 'step  910/1000 ETA 1:30']


def test_progress_on_a_terminal_redraws_one_line():
  stream = Terminal()
  progress = console.Progress(10, stream=stream, interval_s=0)
  progress.update(0, loss=2.5)
  progress.update(5, loss=12.25)
  progress.update(10, loss=1.)
  assert '\n' not in stream.getvalue()
  progress.close()
  text = stream.getvalue()
  assert text.count('\r') == 4 and text.endswith('\n')
  assert '\x1b' not in text
  drawn = text.split('\r')
  assert drawn[2].startswith('[==========          ]  5/10 ETA')
  # A shorter line blanks what is left of the longer one before it.
  assert len(drawn[3]) >= len(drawn[2].rstrip())


def test_exit_on_errors_prints_one_line_and_exits_with_the_code(capsys):
  class ConfigError(ValueError):
    pass

  class NarrowConfigError(ConfigError):
    pass

  def main(argv):
    if argv == ['fail']:
      raise NarrowConfigError('--batch_size must be positive, got -1.')
    if argv == ['bug']:
      raise KeyError('bug')
    return 'done'

  run = console.exit_on_errors(main, {ConfigError: 2, RuntimeError: 1})
  assert run(['ok']) == 'done'
  with pytest.raises(SystemExit) as exit_info:
    run(['fail'])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err == (
      'error: --batch_size must be positive, got -1.\n')
  with pytest.raises(KeyError):
    run(['bug'])


def test_filter_cpp_logs_keeps_the_wanted_severities_and_other_lines():
  text = (
      'WARNING: All log messages before absl::InitializeLog() is called are '
      'written to STDERR\n'
      'I0000 00:00:1796.5    6874 port.cc:153] oneDNN custom operations\n'
      '2025-09-17 14:44:05.157831: I external/xla/cudart_stub.cc:32] Could '
      'not find cuda drivers\n'
      '/x/y.py:3: UserWarning: a Python warning\n'
      'E0000 00:00:1796.5    6874 cuda_dnn.cc:8579] Unable to register\n'
      'W0000 00:00:1796.5    6874 placer.cc:177] already registered\n')
  assert console._filter_cpp_logs(text, keep='F') == (
      '/x/y.py:3: UserWarning: a Python warning\n')
  assert console._filter_cpp_logs(text, keep='WEF') == (
      '/x/y.py:3: UserWarning: a Python warning\n'
      'E0000 00:00:1796.5    6874 cuda_dnn.cc:8579] Unable to register\n'
      'W0000 00:00:1796.5    6874 placer.cc:177] already registered\n')


# What TensorFlow prints by default: as it loads (oneDNN, CUDA, the CPU's
# instructions), and exports.
NOISE = ('cuInit', 'oneDNN', 'absl::InitializeLog', 'unsupported characters',
         'rebuild TensorFlow')

SCRIPT = """
from tf_realnvp import console
console.quiet(2)
import tensorflow as tf
import tf_realnvp
flow = tf_realnvp.make_flow('realnvp')
print('log_prob', flow.log_prob(tf.zeros([3, 2])).numpy())
"""


def test_quiet_2_lets_tensorflow_speak():
  env = {k: v for k, v in os.environ.items() if not k.startswith('TF_CPP_')}
  env['PYTHONPATH'] = os.pathsep.join([REPO_ROOT, env.get('PYTHONPATH', '')])
  result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=300, check=True)
  assert any(noise in result.stdout + result.stderr for noise in NOISE)


def test_quiet_0_silences_tensorflow_but_not_our_warnings(monkeypatch):
  """TensorFlow's Python warnings and absl INFO are off, absl warnings (ours)
  pass. In process, where TensorFlow is loaded already; what its C++ side
  prints at verbosity 0, train.py's own run in test_cli shows: nothing."""
  tf_logger = logging.getLogger('tensorflow')
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', os.environ.get(
      'TF_CPP_MIN_LOG_LEVEL', '0'))
  levels = tf_logger.level, absl_logging.get_verbosity()
  tf_logger.setLevel(logging.DEBUG)  # All on, so that quiet has work to do.
  absl_logging.set_verbosity(absl_logging.DEBUG)
  try:
    console.quiet(0)
    ours = absl_logging.get_absl_logger()
    assert ours.isEnabledFor(logging.WARNING)
    assert not ours.isEnabledFor(logging.INFO)
    assert not tf_logger.isEnabledFor(logging.WARNING)
    assert tf_logger.isEnabledFor(logging.ERROR)
  finally:
    tf_logger.setLevel(levels[0])
    absl_logging.set_verbosity(levels[1])
