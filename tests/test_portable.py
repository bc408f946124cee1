"""TFLite and ONNX export: the runtimes themselves, in a process that never
imports tf_realnvp, reproduce the SavedModel's log_prob, decode and samples;
a run trained in mixed bfloat16 exports in float32; evaluate.py refuses a
format whose packages are missing before it evaluates."""

import dataclasses
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys

from absl import flags
from absl import logging as absl_logging
from absl.testing import flagsaver
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

import tf_realnvp
from tf_realnvp import console
from tf_realnvp import evaluation
from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.flows import realnvp
from tf_realnvp.serving import portable
from tf_realnvp.serving import saved_model

# Runs every case's files in one runtime: `python -c RUNTIME_SCRIPT FORMAT
# CASE_DIR...`; reads CASE_DIR/inputs.npz, writes CASE_DIR/FORMAT.npz and
# CASE_DIR/FORMAT.json (the names each file takes and returns).
RUNTIME_SCRIPT = """
import json, sys
import numpy as np
fmt, cases = sys.argv[1], sys.argv[2:]
if fmt == 'onnx':
  import onnxruntime

  def load(path):
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    names = ([i.name for i in session.get_inputs()],
             [o.name for o in session.get_outputs()])
    return names, lambda **inputs: dict(
        zip(names[1], session.run(None, inputs)))
else:
  import tensorflow as tf

  def load(path):
    interpreter = tf.lite.Interpreter(model_path=path)
    (signature,) = interpreter.get_signature_list().values()
    return ((sorted(signature['inputs']), signature['outputs']),
            interpreter.get_signature_runner())
for case in cases:
  arrays = dict(np.load(f'{case}/inputs.npz'))
  context = {'label': arrays['label']} if 'label' in arrays else {}
  bad_context = {'label': arrays['bad_label']} if context else {}
  log_prob_names, log_prob = load(f'{case}/export/log_prob.{fmt}')
  decode_names, decode = load(f'{case}/export/decode.{fmt}')
  np.savez(f'{case}/{fmt}.npz',
           log_prob=log_prob(x=arrays['x'], **context)['log_prob'],
           decoded=decode(z=arrays['z'], **context)['x'],
           samples=decode(z=arrays['noise'], **({'label': arrays['sample_label']}
                                               if context else {}))['x'],
           bad_x=log_prob(x=arrays['bad_x'], **context)['log_prob'],
           bad_label=log_prob(x=arrays['x'], **bad_context)['log_prob'],
           bad_z=decode(z=arrays['bad_z'], **context)['x'])
  with open(f'{case}/{fmt}.json', 'w') as f:
    json.dump(dict(log_prob=log_prob_names, decode=decode_names,
                   imported_tf_realnvp='tf_realnvp' in sys.modules), f)
"""

# Batch sizes the exports never saw: they trace with a dynamic batch.
BATCH = 5
NUM_SAMPLES = 3
TEMPERATURE = 0.7


def perturbed(flow):
  """`flow` with random weights, so the couplings are not the identity."""
  rng = np.random.RandomState(0)
  for v in flow.trainable_variables:
    v.assign(rng.normal(0., 0.1, v.shape).astype(np.float32))
  return flow


CASES = {
    # Splines and a class label, on 2-D points.
    'vector': lambda: tf_realnvp.make_flow(
        'nsf', (2,), num_layers=2, hidden_units=(16,), num_classes=3),
    # Glow steps (ActNorm, 1x1 convolution, affine coupling) with a learned
    # dequantization, logit and convolutions.
    'image': lambda: tf_realnvp.make_flow(
        'glow', (4, 4, 3), num_scales=1, num_res_blocks=1, num_filters=4,
        dequantization='variational'),
}


def write_case(name, case_dir):
  """Exports the case's flow both ways; writes its inputs; returns the
  SavedModel's answers to them."""
  keras.utils.set_random_seed(0)
  flow = CASES[name]()
  shape = tuple(flow.event_shape.as_list())
  image = len(shape) == 3
  rng = np.random.RandomState(1)
  x = (rng.uniform(0., 256., (BATCH,) + shape) if image
       else rng.normal(0., 2., (BATCH,) + shape)).astype(np.float32)
  if image:  # ActNorm initializes itself, as on a first training batch.
    flow.log_prob(x)
  perturbed(flow)
  z = rng.normal(0., 1., (BATCH,) + shape).astype(np.float32)
  bad_x, bad_z = x.copy(), z.copy()
  bad_x[1].flat[0] = 256. if image else np.inf
  bad_z[2].flat[0] = np.nan
  seed = tf.constant([1, 2])
  # The noise sample_with_temperature draws for `seed`.
  noise = tf.random.stateless_normal((NUM_SAMPLES,) + shape, seed) * TEMPERATURE
  inputs = dict(x=x, z=z, bad_x=bad_x, bad_z=bad_z, noise=noise.numpy())
  context, sample_context = [], []
  if name == 'vector':  # The conditional one: labels in [0, 3).
    inputs['label'] = np.arange(BATCH, dtype=np.int32) % 3
    inputs['bad_label'] = inputs['label'].copy()
    inputs['bad_label'][3] = 3
    # sample_with_temperature's samples are all of one class.
    inputs['sample_label'] = np.full(NUM_SAMPLES, 1, np.int32)
    context, sample_context = [inputs['label']], [1]
  np.savez(os.path.join(case_dir, 'inputs.npz'), **inputs)
  portable.export_portable(flow, os.path.join(case_dir, 'export'))
  # The functions export_saved_model saves, in this process (that a saved
  # copy answers as they do, tests/test_saved_model.py checks).
  model = saved_model.ExportedFlow(flow)
  samples = model.sample_with_temperature(NUM_SAMPLES, TEMPERATURE, seed,
                                         *sample_context)
  return dict(log_prob=model.log_prob(x, *context).numpy(),
              decoded=model.decode(z, *context).numpy(),
              samples=samples.numpy(),
              noise=inputs['noise'], label=inputs.get('label'))


@pytest.fixture(scope='module')
def cases(tmp_path_factory):
  """{case: (its directory, the SavedModel's answers)}, exported once."""
  root = tmp_path_factory.mktemp('portable')
  answers = {}
  # The image case's noise flow: one coupling of one residual block
  # instead of 4 of 2, the same ops in half the conversion time.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(realnvp, 'NOISE_COUPLINGS', 1)
    patch.setattr(realnvp, 'NOISE_BLOCKS', 1)
    for name in CASES:
      case_dir = root / name
      case_dir.mkdir()
      answers[name] = (str(case_dir), write_case(name, str(case_dir)))
  return answers


@pytest.fixture(scope='module', params=['tflite', 'onnx'])
def runtime(request, cases):
  """(format, {case: (what the runtime answered, the names it saw)})."""
  fmt = request.param
  run = subprocess.run(
      [sys.executable, '-c', RUNTIME_SCRIPT, fmt] +
      [case_dir for case_dir, _ in cases.values()],
      capture_output=True, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert run.returncode == 0, run.stderr[-3000:]
  results = {}
  for name, (case_dir, _) in cases.items():
    with open(os.path.join(case_dir, f'{fmt}.json')) as f:
      results[name] = (dict(np.load(os.path.join(case_dir, f'{fmt}.npz'))),
                       json.load(f))
  return fmt, results


@pytest.mark.parametrize('name', list(CASES))
def test_runtime_matches_the_saved_model(runtime, cases, name):
  """log_prob within 1e-4 relative, decode and the samples (decoded Normal
  noise) within 0.05 data units, at a batch size never traced; the same
  input and output names as the SavedModel's signatures."""
  fmt, results = runtime
  got, names = results[name]
  _, want = cases[name]
  assert not names['imported_tf_realnvp']
  context = ['label'] if want['label'] is not None else []
  assert names['log_prob'] == [sorted(['x'] + context), ['log_prob']]
  assert names['decode'] == [sorted(['z'] + context), ['x']]
  np.testing.assert_allclose(got['log_prob'], want['log_prob'], rtol=1e-4,
                             err_msg=fmt)
  np.testing.assert_allclose(got['decoded'], want['decoded'], atol=0.05,
                             rtol=0, err_msg=fmt)
  np.testing.assert_allclose(got['samples'], want['samples'], atol=0.05,
                             rtol=0, err_msg=fmt)


@pytest.mark.parametrize('name', list(CASES))
def test_invalid_rows_give_nan(runtime, cases, name):
  """The SavedModel's input checks, as NaN in the offending row only."""
  fmt, results = runtime
  got, _ = results[name]
  _, want = cases[name]
  bad_rows = {'bad_x': 1, 'bad_z': 2, 'bad_label': 3}
  for key, row in bad_rows.items():
    if key == 'bad_label' and want['label'] is None:
      continue
    values = got[key].reshape(BATCH, -1)
    assert np.isnan(values[row]).all(), (fmt, key)
    others = np.delete(values, row, axis=0)
    reference = want['decoded' if key == 'bad_z' else 'log_prob']
    np.testing.assert_allclose(
        others, np.delete(reference.reshape(BATCH, -1), row, axis=0),
        rtol=1e-4, atol=0.05 if key == 'bad_z' else 0, err_msg=(fmt, key))


def test_unknown_format_is_refused(tmp_path):
  flow = tf_realnvp.make_flow('realnvp', (2,), num_layers=2, hidden_units=(8,))
  with pytest.raises(tf_realnvp.config.ConfigError, match='tflite and onnx'):
    portable.export_portable(flow, str(tmp_path), ['coreml'])
  assert not os.listdir(tmp_path)


def test_a_flow_a_format_cannot_express_is_refused_naming_the_op(tmp_path):
  """IAF's autoregressive log_prob is a loop, which tf2onnx cannot freeze:
  one line naming it, no file written."""
  flow = tf_realnvp.make_flow('iaf', (2,), num_layers=2, hidden_units=(8,))
  with pytest.raises(portable.PortableExportError,
                     match=r'^ONNX cannot express While of this flow'):
    portable.export_portable(flow, str(tmp_path), ['onnx'])
  assert not os.listdir(tmp_path)


@pytest.fixture(scope='module')
def evaluate_py():
  """evaluate.py's module, imported in this process; the log levels its
  import sets (`console.quiet`) are undone."""
  tf_logger = logging.getLogger('tensorflow')
  levels = tf_logger.level, absl_logging.get_verbosity()
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(sys, 'argv', ['evaluate.py'])
    patch.setenv('TF_CPP_MIN_LOG_LEVEL',
                 os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0'))
    module = importlib.import_module('evaluate')
  tf_logger.setLevel(levels[0])
  absl_logging.set_verbosity(levels[1])
  return module


def run_evaluate_py(evaluate_py, *args):
  """evaluate.py's `main` on the flags `args`, as the script runs it: an
  error it reports in one line exits (`SystemExit`). The flags are reset
  after."""
  with flagsaver.flagsaver():
    flags.FLAGS(['evaluate.py', *args])
    console.exit_on_errors(evaluate_py.main, evaluate_py.EXIT_CODES)([])


@pytest.fixture(scope='module')
def mixed_run(tmp_path_factory):
  """The directory of an image run of the default flow trained in mixed
  bfloat16, with --export: 8x8 RGB images in an .npz file, a one-scale
  model, two steps with averaged weights, a learning rate that moves them
  well away from the identity couplings they start as."""
  root = tmp_path_factory.mktemp('mixed')
  rng = np.random.RandomState(0)
  np.savez(root / 'images.npz',
           train=rng.randint(0, 256, (16, 8, 8, 3)).astype(np.uint8),
           test=rng.randint(0, 256, (8, 8, 8, 3)).astype(np.uint8))
  config = tf_realnvp.config.Config(
      dataset=f'npz:{root / "images.npz"}', model_dir=str(root / 'run'),
      mixed_precision=True, num_scales=1, num_res_blocks=1, num_filters=4,
      batch_size=8, train_steps=2, learning_rate=0.1, ema_decay=0.5,
      eval_batches=1, export=True)
  training.train_and_evaluate(experiment.resolve(config))
  return root / 'run'


def bfloat16_ops(export_dir):
  """The ops of the SavedModel in `export_dir`, its functions' included,
  that compute in bfloat16 or cast to it."""
  model = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, 'saved_model.pb'), 'rb') as f:
    model.ParseFromString(f.read())
  graph = model.meta_graphs[0].graph_def
  nodes = list(graph.node) + [node for function in graph.library.function
                              for node in function.node_def]
  return sorted({node.op for node in nodes for value in node.attr.values()
                 if types_pb2.DT_BFLOAT16 in [value.type, *value.list.type]})


def test_a_mixed_bfloat16_run_exports_in_float32(mixed_run, evaluate_py,
                                                 tmp_path, monkeypatch):
  """The SavedModel of train.py --export, and the SavedModel and TFLite
  files of evaluate.py, compute in float32 the density of the averaged
  weights: that of the run's checkpoint read into a float32 flow. (ONNX
  converts the same float32 twin; `test_runtime_matches_the_saved_model`
  runs its converter on float32 flows.)"""
  float32_run = tmp_path / 'float32'
  shutil.copytree(mixed_run / 'checkpoints', float32_run / 'checkpoints')
  config = tf_realnvp.config.Config.load(str(mixed_run))
  dataclasses.replace(config, mixed_precision=False).save(str(float32_run))
  x = np.random.RandomState(1).uniform(0., 256., (5, 8, 8, 3)).astype(
      np.float32)
  want = evaluation.restore_flow(str(float32_run))[1].log_prob(x).numpy()
  # bfloat16 networks compute another density, beyond the tolerance.
  mixed = evaluation.restore_flow(str(mixed_run))[1].log_prob(x)
  assert not np.allclose(mixed, want, rtol=1e-5, atol=0)

  def check_saved_model(writer):
    assert bfloat16_ops(mixed_run / 'saved_model') == [], writer
    exported = tf.saved_model.load(str(mixed_run / 'saved_model'))
    np.testing.assert_allclose(exported.log_prob(x), want, rtol=1e-5,
                               err_msg=writer)

  check_saved_model('train.py')
  # log_prob alone: decode runs the same networks.
  monkeypatch.setattr(portable, 'PORTABLE_SIGNATURES',
                      {'log_prob': 'log_prob'})
  run_evaluate_py(evaluate_py, f'--model_dir={mixed_run}', '--eval_batches=1',
                  '--export_formats=saved_model,tflite')
  check_saved_model('evaluate.py')
  export = mixed_run / 'export'
  tflite = tf.lite.Interpreter(
      model_path=str(export / 'log_prob.tflite')).get_signature_runner()
  np.testing.assert_allclose(tflite(x=x)['log_prob'], want, rtol=1e-5)


def test_a_float32_twin_needs_the_same_variables(mixed_run):
  """`Experiment.float32_flow` copies variables in order: a flow of another
  model is refused, not half copied."""
  run = experiment.load(str(mixed_run))
  wider = dataclasses.replace(run, config=dataclasses.replace(
      run.config, num_filters=8)).build_flow()
  with pytest.raises(ValueError, match='other variables'):
    run.float32_flow(wider)


def modification_times(directory):
  """{path: modification time} of everything under `directory`."""
  return {path: path.stat().st_mtime_ns for path in directory.rglob('*')}


# ONNX's converter and its runtime (which runs the probe). onnx itself is
# left: without it, tf2onnx does not import either.
@pytest.mark.parametrize('package', ['tf2onnx', 'onnxruntime'])
def test_onnx_without_its_packages_is_one_line_before_evaluating(
    mixed_run, evaluate_py, monkeypatch, capfd, package):
  """evaluate.py exits with code 2 and the line saying what to install,
  before it reads the run or writes anything; TFLite needs none of them."""
  before = modification_times(mixed_run)
  monkeypatch.setitem(sys.modules, package, None)  # Its import fails.
  capfd.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    run_evaluate_py(evaluate_py, f'--model_dir={mixed_run}',
                    '--export_formats=tflite,onnx')
  assert exit_info.value.code == 2
  assert capfd.readouterr() == (
      '', 'error: onnx export needs tf2onnx, onnx, onnxruntime (missing: '
      f"{package}): pip install -e '.[export]' in the checkout, or pip "
      'install tf2onnx onnxruntime.\n')
  assert modification_times(mixed_run) == before
  portable.check_formats(['tflite'])
