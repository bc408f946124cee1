"""Nothing lost, nothing silently wrong: kills, signals, damaged checkpoints,
two runs on one folder, config.json.

The probe: a short `train.py` run is killed (SIGKILL) while a checkpoint is
being written, and stopped by SIGTERM; each time the same command resumes it,
and it must end bit-identical to a run that was never interrupted. (SIGINT
takes the same handler as SIGTERM; tests/test_loop.py stops a run with it
in process.)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from runs import checkpoint_arrays
from runs import small_config
from runs import train

from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.config import run_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 400


def command(directory, steps=STEPS):
  return [sys.executable, 'train.py', '--dataset=moons', '--flow=realnvp',
          f'--model_dir={directory}', f'--train_steps={steps}',
          '--batch_size=64', '--num_coupling_layers=2', '--hidden_units=16',
          '--checkpoint_every=20', f'--eval_every={steps}', '--eval_batches=1',
          '--export=false', '--learning_rate=1e-3', '--warmup_steps=0',
          '--lr_decay=none']


def start(directory):
  """Starts the run; returns once it is training (its first progress line)."""
  process = subprocess.Popen(command(directory), cwd=REPO_ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  assert process.stdout.readline().startswith('step ')
  return process


def wait_for(condition, timeout=120):
  deadline = time.time() + timeout
  while not condition():
    assert time.time() < deadline, 'timed out'
    time.sleep(0.001)


def checkpoint_being_written(directory):
  folder = os.path.join(directory, 'checkpoints')
  return os.path.isdir(folder) and any('_temp' in name
                                       for name in os.listdir(folder))


def test_killed_or_signalled_runs_resume_bit_identical(tmp_path):
  # The uninterrupted run, in process: the same settings as `command`.
  train(small_config(tmp_path / 'straight', train_steps=STEPS,
                     num_coupling_layers=2, hidden_units=(16,),
                     checkpoint_every=20, eval_every=STEPS, eval_batches=1,
                     learning_rate=1e-3))
  probed = str(tmp_path / 'probed')
  for interruption in ('kill while a checkpoint is written', 'SIGTERM'):
    process = start(probed)
    try:
      if interruption == 'SIGTERM':
        number = signal.SIGTERM
        time.sleep(0.5)
      else:
        number = signal.SIGKILL
        wait_for(lambda: checkpoint_being_written(probed))
      process.send_signal(number)
      stderr = process.communicate(timeout=120)[1]
    finally:
      process.kill()
    saved = run_dir.checkpoints_newest_first(
        os.path.join(probed, 'checkpoints'))
    finished = bool(saved) and saved[0].endswith(f'ckpt-{STEPS}')
    if process.returncode in (0, -number) and finished:
      continue  # It finished first; the signal came as it exited.
    if number == signal.SIGKILL:
      assert process.returncode == -signal.SIGKILL
    else:
      assert process.returncode == 130, stderr
      assert stderr.startswith(f'error: {interruption} at step ')
      assert stderr.count('\n') == 1 and 'checkpoint saved' in stderr
  resumed = subprocess.run(command(probed), cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  expected, actual = checkpoint_arrays(tmp_path / 'straight'), checkpoint_arrays(probed)
  assert expected.keys() == actual.keys() and len(expected) > 10
  for name in expected:
    np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def damage(model_dir, how):
  """Damages the newest checkpoint (or all of them) in `model_dir`."""
  folder = model_dir / 'checkpoints'
  newest = run_dir.checkpoints_newest_first(str(folder))[0]
  if how == 'no index':
    os.remove(newest + '.index')
  elif how == 'truncated data':
    data = newest + '.data-00000-of-00001'
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 2)
  elif how == 'garbage index file':
    (folder / 'checkpoint').write_text('not a checkpoint state\n')
  elif how == 'no checkpoint index file':
    os.remove(folder / 'checkpoint')


def damage_config(model_dir, steps):
  return small_config(model_dir, train_steps=steps, checkpoint_every=10,
                      eval_every=40)


@pytest.fixture(scope='module')
def runs_to_damage(tmp_path_factory):
  """A run of 40 steps, and one of the same stopped at 30 (to be damaged)."""
  root = tmp_path_factory.mktemp('runs')
  straight = train(damage_config(root / 'straight', 40))
  train(damage_config(root / 'stopped', 30))
  return root, straight


@pytest.mark.parametrize('how', ['no index', 'truncated data',
                                 'garbage index file',
                                 'no checkpoint index file'])
def test_a_damaged_checkpoint_falls_back_to_the_newest_intact_one(
    tmp_path, runs_to_damage, how):
  root, straight = runs_to_damage
  model_dir = tmp_path / 'damaged'
  shutil.copytree(root / 'stopped', model_dir)
  damage(model_dir, how)
  resumed = train(damage_config(model_dir, 40))
  assert resumed['test_nll_nats'] == straight['test_nll_nats']
  expected, actual = checkpoint_arrays(root / 'straight'), checkpoint_arrays(model_dir)
  for name in expected:
    np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
  if how in ('no index', 'truncated data'):
    assert os.listdir(model_dir / 'checkpoints' / 'damaged')


def test_no_intact_checkpoint_stops_instead_of_starting_over(
    tmp_path, runs_to_damage):
  model_dir = tmp_path / 'run'
  shutil.copytree(runs_to_damage[0] / 'stopped', model_dir)  # At step 30.
  checkpoints = str(model_dir / 'checkpoints')
  for prefix in run_dir.checkpoints_newest_first(checkpoints):
    os.remove(prefix + '.index')
  with pytest.raises(run_dir.NoIntactCheckpointError,
                     match='ckpt-30, ckpt-20.*--restart'):
    train(damage_config(model_dir, 40))
  restarted = train(small_config(model_dir, train_steps=40,
                                 checkpoint_every=10, eval_every=40,
                                 restart=True))
  assert restarted['step'] == 40
  assert run_dir.checkpoints_newest_first(checkpoints)


HOLD_LOCK = """
import sys, time
from tf_realnvp.config import run_dir
with run_dir.locked(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(600)
"""


def test_a_second_run_on_a_folder_in_use_refuses_naming_the_holder(tmp_path):
  model_dir = tmp_path / 'run'
  holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(model_dir)],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == 'locked\n'
    with pytest.raises(run_dir.ModelDirBusyError,
                       match=f'in use by a training run \\(pid {holder.pid} '):
      train(small_config(model_dir, train_steps=2))
  finally:
    holder.kill()
    holder.wait()
  # The holder died without unlocking: its lock is taken over.
  assert train(small_config(model_dir, train_steps=2))['step'] == 2


def test_config_json_is_written_whole_and_only_when_it_changes(tmp_path):
  config = experiment.resolve(small_config(tmp_path)).config
  config.save(str(tmp_path))
  path = tmp_path / 'config.json'
  os.utime(path, (0, 0))
  config.save(str(tmp_path))
  assert os.path.getmtime(path) == 0  # Unchanged: not rewritten.
  config.log_every = 7
  config.save(str(tmp_path))
  assert json.loads(path.read_text())['log_every'] == 7
  assert sorted(os.listdir(tmp_path)) == ['config.json']


def test_asking_for_fewer_steps_than_the_run_has_is_an_error(
    tmp_path, runs_to_damage):
  shutil.copytree(runs_to_damage[0] / 'stopped', tmp_path / 'run')
  with pytest.raises(experiment.ConfigError, match='at step 30, past the 10'):
    train(damage_config(tmp_path / 'run', 10))


def test_a_signal_in_process_stops_after_the_step_and_saves(tmp_path,
                                                            monkeypatch):
  """SIGTERM arriving inside a step: the step completes, the checkpoint
  holds it, `TrainingInterrupted` names the signal."""
  take_step = training.Training._advance

  def signalled_at_5(self):
    if self.current_step == 4:
      os.kill(os.getpid(), signal.SIGTERM)
    return take_step(self)
  monkeypatch.setattr(training.Training, '_advance', signalled_at_5)
  with pytest.raises(training.TrainingInterrupted, match='SIGTERM at step 5'):
    train(small_config(tmp_path / 'run', train_steps=20))
  assert run_dir.checkpoints_newest_first(
      str(tmp_path / 'run' / 'checkpoints'))[0].endswith('ckpt-5')


def test_a_checkpoint_that_cannot_be_written_stops_the_run_in_one_line(
    tmp_path, monkeypatch):
  """As on a full disk: the half-written checkpoint goes, the earlier one
  stays, and the run resumes from it."""
  model_dir = tmp_path / 'run'
  save = tf.train.CheckpointManager.save

  def disk_full_at_20(manager, checkpoint_number=None, **kwargs):
    if checkpoint_number == 20:
      os.makedirs(os.path.join(manager.directory, 'ckpt-20_temp'))
      raise tf.errors.ResourceExhaustedError(None, None,
                                             'No space left on device')
    return save(manager, checkpoint_number=checkpoint_number, **kwargs)
  with monkeypatch.context() as patch:
    patch.setattr(tf.train.CheckpointManager, 'save', disk_full_at_20)
    with pytest.raises(run_dir.SaveError,
                       match='step 20 .*No space left on device.*the one of '
                             'step 10 is intact'):
      train(small_config(model_dir, train_steps=30, checkpoint_every=10))
  assert sorted(os.listdir(model_dir / 'checkpoints')) == [
      'checkpoint', 'ckpt-10.data-00000-of-00001', 'ckpt-10.index']
  assert train(small_config(model_dir, train_steps=30,
                            checkpoint_every=10))['step'] == 30
