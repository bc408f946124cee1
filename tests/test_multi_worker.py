"""MultiWorkerMirroredStrategy on localhost: two worker processes, one CPU each."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from runs import checkpoint_arrays

from tf_realnvp import config as config_lib
from tf_realnvp import training
from tf_realnvp.config import experiment

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = """
import json, sys
from tf_realnvp import config as config_lib, training
from tf_realnvp.config import experiment
print(json.dumps(training.train_and_evaluate(experiment.resolve(
    config_lib.Config(**json.loads(sys.argv[1]))))))
"""


def settings(model_dir, **overrides):
  values = dict(dataset='moons', flow='realnvp', model_dir=str(model_dir),
                jit=False, batch_size=64, train_steps=6, num_coupling_layers=2,
                hidden_units=[16], eval_every=100000, eval_batches=1,
                checkpoint_every=100000, export=False,
                # A constant rate: a resumed run may then train longer.
                learning_rate=1e-3, warmup_steps=0, lr_decay='none')
  values.update(overrides)
  return values


def free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def start(values, tf_config=None):
  scratch = os.path.join(values['model_dir'] + '_scratch')
  os.makedirs(scratch, exist_ok=True)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', TMPDIR=scratch)
  if tf_config:
    env['TF_CONFIG'] = json.dumps(tf_config)
  return subprocess.Popen(
      [sys.executable, '-c', TRAIN_SCRIPT, json.dumps(values)], cwd=REPO_ROOT,
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_cluster(values):
  workers = [f'localhost:{port}' for port in free_ports(2)]
  return [start(values, {'cluster': {'worker': workers},
                         'task': {'type': 'worker', 'index': index}})
          for index in range(2)]


def finish(processes, timeout=240):
  outputs = []
  for process in processes:
    try:
      outputs.append(process.communicate(timeout=timeout))
    finally:
      process.kill()
  return outputs


def test_two_workers_end_with_the_weights_of_one_process(tmp_path):
  cluster = start_cluster(settings(tmp_path / 'cluster'))
  # Meanwhile, the same run on one device, in this process.
  training.train_and_evaluate(experiment.resolve(config_lib.Config(
      **settings(tmp_path / 'single', strategy='one_device'))))
  for process, (_, stderr) in zip(cluster, finish(cluster)):
    assert process.returncode == 0, stderr[-3000:]
  expected = checkpoint_arrays(tmp_path / 'single')
  actual = checkpoint_arrays(tmp_path / 'cluster')
  assert expected.keys() == actual.keys() and len(expected) > 10
  for name, value in expected.items():
    np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-6,
                               err_msg=name)
  # The other worker wrote into a temporary directory, removed at the end.
  assert os.listdir(tmp_path / 'cluster_scratch') == []


def test_killed_worker_saves_and_restarted_cluster_resumes(tmp_path):
  model_dir = tmp_path / 'run'
  cluster = start_cluster(settings(model_dir, train_steps=1000000,
                                   checkpoint_every=5))
  deadline = time.time() + 120
  # The workers have taken steps once the chief has saved a checkpoint.
  while (not (model_dir / 'checkpoints' / 'checkpoint').exists()
         and time.time() < deadline):
    time.sleep(0.1)
  cluster[1].send_signal(signal.SIGTERM)
  finish(cluster, timeout=120)
  saved = checkpoint_arrays(model_dir)
  step = int(saved['step/.ATTRIBUTES/VARIABLE_VALUE'])
  assert step > 0
  restarted = start_cluster(settings(model_dir, train_steps=step + 3))
  outputs = finish(restarted)
  for process, (stdout, stderr) in zip(restarted, outputs):
    assert process.returncode == 0, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1])['step'] == step + 3
