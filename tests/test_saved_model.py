"""SavedModel export: reloads and runs without tf_realnvp; checks its inputs;
written atomically."""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import keras
import pytest
import tensorflow as tf

import tf_realnvp
from tf_realnvp.flows import realnvp
from tf_realnvp.serving import saved_model

# The serving signatures: {key: [input names, output names]}, as TF Serving
# and saved_model_cli see them.
SIGNATURES = {
    'serving_default': [['x'], ['log_prob']],
    'log_prob': [['x'], ['log_prob']],
    'sample': [['n'], ['samples']],
    'sample_with_temperature': [['n', 'seed', 'temperature'], ['samples']],
    'encode': [['x'], ['z']],
    'decode': [['z'], ['x']],
}

# Runs in a process that never imports tf_realnvp, once for every export of
# this file: argv holds JSON [[folder, export_dir, job], ...]. In each folder
# it reads x.npy and z.npy (labels.npy for the conditional job) and writes
# arrays.npz and facts.json there. The job 'cli' also runs `saved_model_cli
# show` and `run` as the README has them, in this process (the
# `saved_model_cli` script only calls this `main`), which saves starting
# TensorFlow twice more.
RELOAD_SCRIPT = """
import contextlib, io, json, os, sys
import numpy as np
import tensorflow as tf
from tensorflow.python.tools import saved_model_cli


def cli(*args):
  sys.argv = ['saved_model_cli', *args]
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    try:
      saved_model_cli.main()
    except SystemExit as exit:
      assert not exit.code, f'saved_model_cli {args} exited with {exit.code}'
  return printed.getvalue()


def reload(export_dir, with_cli):
  model = tf.saved_model.load(export_dir)
  x, z = np.load('x.npy'), np.load('z.npy')
  signatures = model.signatures
  seed = tf.constant([1, 2])
  encoded = signatures['encode'](x=x)
  arrays = dict(
      log_prob=model.log_prob(x),
      serving_default=signatures['serving_default'](x=x)['log_prob'],
      log_prob_signature=signatures['log_prob'](x=x)['log_prob'],
      samples=model.sample_with_temperature(4, 0.7, seed),
      samples_signature=signatures['sample_with_temperature'](
          n=tf.constant(4), temperature=tf.constant(0.7), seed=seed)['samples'],
      encoded=model.encode(x),
      encoded_signature=encoded['z'],
      round_trip=signatures['decode'](z=encoded['z'])['x'],
      decoded=model.decode(z),
      decoded_signature=signatures['decode'](z=z)['x'])
  assert model.sample(3).shape[0] == 3
  assert signatures['sample'](n=tf.constant(3))['samples'].shape[0] == 3
  show = run = None
  if with_cli:
    show = cli('show', '--dir', export_dir, '--all')
    run = cli('run', '--dir', export_dir, '--tag_set', 'serve',
              '--signature_def', 'serving_default', '--outdir', 'cli',
              '--input_exprs', 'x=' + repr(x.tolist()))
    arrays['cli_log_prob'] = np.load('cli/log_prob.npy')
  np.savez('arrays.npz', **{k: np.asarray(v) for k, v in arrays.items()})
  return dict(
      signatures={key: [sorted(fn.structured_input_signature[1]),
                        sorted(fn.structured_outputs)]
                  for key, fn in signatures.items()},
      event_shape=model.event_shape.numpy().tolist(),
      show=show,
      run=run)


def reload_conditional(export_dir):
  model = tf.saved_model.load(export_dir)
  x, labels = np.load('x.npy'), np.load('labels.npy')
  signatures = model.signatures
  z = signatures['encode'](x=x, label=labels)['z']
  facts = dict(
      log_prob=signatures['serving_default'](x=x, label=labels)['log_prob']
      .numpy().tolist(),
      round_trip=signatures['decode'](z=z, label=labels)['x'].numpy().tolist(),
      samples=model.sample_with_temperature(5, 0.5, [1, 2], 2).numpy().tolist(),
      num_classes=int(model.num_classes.numpy()),
      inputs={key: sorted(fn.structured_input_signature[1])
              for key, fn in signatures.items()})
  try:
    model.log_prob(x, tf.constant([0, 3], tf.int32))
    facts['bad_label'] = 'accepted'
  except tf.errors.InvalidArgumentError as error:
    facts['bad_label'] = error.message
  return facts


for folder, export_dir, job in json.loads(sys.argv[1]):
  os.chdir(folder)
  facts = (reload_conditional(export_dir) if job == 'conditional'
           else reload(export_dir, with_cli=job == 'cli'))
  facts['imported_tf_realnvp'] = 'tf_realnvp' in sys.modules
  with open('facts.json', 'w') as f:
    json.dump(facts, f)
"""


def perturbed(flow):
  rng = np.random.RandomState(0)
  for v in flow.trainable_variables:
    v.assign(rng.normal(0., 0.1, v.shape).astype(np.float32))
  return flow


EVENT_SHAPES = {'image': (8, 8, 3), 'vector': (2,)}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """Live flows (as the trainer builds them: no run-time argument checks),
  their inputs, exported: {kind: (flow, inputs, folder, export_dir)} for
  'image', 'vector' and 'conditional'."""
  keras.utils.set_random_seed(0)
  # The image flow learns its dequantization, which a SavedModel serves too:
  # one scale, and a noise flow of one coupling of one residual block instead
  # of 4 of 2, the same ops in a third of the export and reload time.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(realnvp, 'NOISE_COUPLINGS', 1)
    patch.setattr(realnvp, 'NOISE_BLOCKS', 1)
    flows = {kind: perturbed(tf_realnvp.RealNVP(
        event_shape, num_res_blocks=1, num_filters=8, hidden_units=(16,),
        validate_args=False, **(dict(dequantization='variational',
                                     num_scales=1)
                                if kind == 'image' else {})))
             for kind, event_shape in EVENT_SHAPES.items()}
  flows['conditional'] = perturbed(tf_realnvp.RealNVP(
      (2,), num_coupling_layers=2, hidden_units=(8,), num_classes=3,
      conditional_prior=True))
  cases = {}
  for kind, flow in flows.items():
    if kind == 'conditional':
      inputs = dict(x=np.array([[0.5, -1.], [2., 0.3]], np.float32),
                    labels=np.array([2, 0], np.int32))
    else:
      low, high = (0., 256.) if kind == 'image' else (-3., 3.)
      rng = np.random.RandomState(1)
      shape = (5,) + EVENT_SHAPES[kind]
      inputs = dict(x=rng.uniform(low, high, shape).astype(np.float32),
                    z=rng.normal(0., 1., shape).astype(np.float32))
    folder = tmp_path_factory.mktemp(kind)
    for name, array in inputs.items():
      np.save(folder / f'{name}.npy', array)
    cases[kind] = (flow, inputs, str(folder), saved_model.export_saved_model(
        flow, str(folder / 'model')))
  return cases


@pytest.fixture(scope='module')
def served_elsewhere(exported):
  """What the SavedModels of `exported` return in ONE process that never
  imports tf_realnvp (saved_model_cli too on the 2-D flow):
  {kind: (flow, inputs, arrays, facts)}."""
  # saved_model_cli on the 2-D flow: 3 s; on the image flow 15 s more.
  jobs = {'image': 'reload', 'vector': 'cli', 'conditional': 'conditional'}
  work = [(folder, export_dir, jobs[kind])
          for kind, (_, _, folder, export_dir) in exported.items()]
  run = subprocess.run([sys.executable, '-c', RELOAD_SCRIPT, json.dumps(work)],
                       capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert run.returncode == 0, run.stderr[-3000:]
  served = {}
  for kind, (flow, inputs, folder, _) in exported.items():
    with open(os.path.join(folder, 'facts.json')) as f:
      facts = json.load(f)
    arrays = (None if kind == 'conditional'
              else dict(np.load(os.path.join(folder, 'arrays.npz'))))
    served[kind] = (flow, inputs, arrays, facts)
  return served


def shown_signatures(show):
  """{key: [inputs, outputs]} from `saved_model_cli show --all`'s text."""
  shown = {}
  signature_defs = show.split('Concrete Functions:')[0]
  for block in signature_defs.split("signature_def['")[1:]:
    key = block.split("']", 1)[0]
    shown[key] = [sorted(re.findall(r"inputs\['(\w+)'\]", block)),
                  sorted(re.findall(r"outputs\['(\w+)'\]", block))]
  shown.pop('__saved_model_init_op')  # TensorFlow's, not a servable one.
  return shown


@pytest.mark.parametrize('kind', ['image', 'vector'])
def test_reloaded_model_matches_live_flow_without_the_package(
    served_elsewhere, kind):
  """Functions and serving signatures, by name, from Python and from
  saved_model_cli, agree with the live flow."""
  flow, inputs, got, facts = served_elsewhere[kind]
  event_shape = EVENT_SHAPES[kind]
  image = kind == 'image'
  x, z = inputs['x'], inputs['z']

  assert not facts['imported_tf_realnvp']
  assert facts['event_shape'] == list(event_shape)
  assert facts['signatures'] == SIGNATURES
  live_log_prob = flow.log_prob(x)
  for key in ('log_prob', 'serving_default', 'log_prob_signature'):
    np.testing.assert_allclose(got[key], live_log_prob, rtol=1e-5,
                               err_msg=key)
  if not image:
    assert shown_signatures(facts['show']) == SIGNATURES
    assert 'Result for output key log_prob:' in facts['run']
    np.testing.assert_allclose(got['cli_log_prob'], live_log_prob, rtol=1e-5)
  live_samples = saved_model.ExportedFlow(flow).sample_with_temperature(
      4, 0.7, tf.constant([1, 2]))
  for key in ('samples', 'samples_signature'):
    np.testing.assert_allclose(got[key], live_samples, rtol=1e-5, atol=1e-4,
                               err_msg=key)
  live_z = flow.bijector.inverse(x)
  assert got['encoded'].shape == x.shape
  for key in ('encoded', 'encoded_signature'):
    np.testing.assert_allclose(got[key], live_z, rtol=1e-5, atol=1e-4,
                               err_msg=key)
  # float32 through the logit: within 1e-3 of a pixel level for images.
  np.testing.assert_allclose(got['round_trip'], x, atol=1e-3 if image else 1e-5)
  live_x = flow.bijector.forward(z)
  for key in ('decoded', 'decoded_signature'):
    np.testing.assert_allclose(got[key], live_x, rtol=1e-5,
                               atol=1e-3 if image else 1e-5, err_msg=key)


def test_failed_export_keeps_the_previous_one(tmp_path, monkeypatch):
  flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2, hidden_units=(8,))
  export_dir = str(tmp_path / 'model')
  saved_model.export_saved_model(flow, export_dir)
  before = sorted(os.listdir(export_dir))
  save = tf.saved_model.save

  def save_then_fail(module, path, **kwargs):
    save(module, path, **kwargs)
    raise KeyboardInterrupt('interrupted while exporting')
  monkeypatch.setattr(tf.saved_model, 'save', save_then_fail)
  with pytest.raises(KeyboardInterrupt):
    saved_model.export_saved_model(flow, export_dir)
  assert sorted(os.listdir(export_dir)) == before
  assert os.listdir(tmp_path) == ['model']  # no temporary directory left
  tf.saved_model.load(export_dir)


def test_export_replaces_an_older_one(tmp_path):
  export_dir = str(tmp_path / 'model')
  for layers in (2, 4):
    flow = tf_realnvp.RealNVP((2,), num_coupling_layers=layers,
                              hidden_units=(8,))
    saved_model.export_saved_model(flow, export_dir)
  saved = [name for name, _ in tf.train.list_variables(
      os.path.join(export_dir, 'variables', 'variables'))
           if name != '_CHECKPOINTABLE_OBJECT_GRAPH']
  # And the three facts: event shape, max_samples, num_classes.
  assert len(saved) == len(flow.variables) + 3
  assert os.listdir(tmp_path) == ['model']


@pytest.fixture(scope='module')
def reloaded(exported):
  """The reloaded SavedModels of the image and the 2-D flow, by kind."""
  return {kind: tf.saved_model.load(exported[kind][3])
          for kind in ('image', 'vector')}


@pytest.mark.parametrize('kind', ['image', 'vector'])
def test_empty_batches_give_empty_results(reloaded, kind):
  model = reloaded[kind]
  event_shape = tuple(model.event_shape.numpy())
  empty = tf.zeros((0,) + event_shape)
  assert model.log_prob(empty).shape == (0,)
  assert model.encode(empty).shape == (0,) + event_shape
  assert model.decode(empty).shape == (0,) + event_shape
  assert model.sample(0).shape == (0,) + event_shape
  assert model.sample_with_temperature(
      0, 0.5, tf.constant([1, 2])).shape == (0,) + event_shape


@pytest.mark.parametrize('function', ['log_prob', 'encode'])
@pytest.mark.parametrize('value', [-0.5, 256., 1e9, np.nan, np.inf, -np.inf])
def test_log_prob_and_encode_refuse_pixels_outside_0_to_256(reloaded, function,
                                                          value):
  run = getattr(reloaded['image'], function)
  x = np.full((3, 8, 8, 3), 100., np.float32)
  x[1, 2, 3, 0] = value
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
      f'{function}: pixel values must lie in [0, 256)')):
    run(x)
  x[1, 2, 3, 0] = 255.999
  x[0, 0, 0, 0] = 0.
  assert np.all(np.isfinite(run(x)))


@pytest.mark.parametrize('function', ['log_prob', 'encode'])
@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_vector_log_prob_and_encode_refuse_non_finite_events(reloaded,
                                                             function, value):
  run = getattr(reloaded['vector'], function)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f'{function}: events must be finite'):
    run(np.array([[0., 1.], [value, 0.]], np.float32))
  assert np.all(np.isfinite(run(np.array([[1e3, -1e3]], np.float32))))


@pytest.mark.parametrize('kind', ['image', 'vector'])
@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_decode_refuses_non_finite_latents(reloaded, kind, value):
  model = reloaded[kind]
  z = np.zeros([2] + model.event_shape.numpy().tolist(), np.float32)
  assert np.all(np.isfinite(model.decode(z + 5.)))
  z.flat[-1] = value
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='decode: latents z must be finite'):
    model.decode(z)


@pytest.mark.parametrize('temperature', [0., -0.7, np.nan, np.inf])
def test_temperature_must_be_positive_and_finite(reloaded, temperature):
  """In the function and in the signature TF Serving runs."""
  model = reloaded['image']
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='temperature must be positive and finite'):
    model.sample_with_temperature(2, temperature, tf.constant([1, 2]))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='temperature must be positive and finite'):
    model.signatures['sample_with_temperature'](
        n=tf.constant(2), temperature=tf.constant(temperature, tf.float32),
        seed=tf.constant([1, 2]))


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
    saved_model.export_saved_model(flow, export_dir)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['model'] + [os.path.basename(path) for path in kept])
  finally:
    live.kill()
    live.wait()


def test_a_conditional_export_takes_labels_without_the_package(
    served_elsewhere):
  flow, inputs, _, facts = served_elsewhere['conditional']
  x, labels = inputs['x'], inputs['labels']
  assert not facts['imported_tf_realnvp']
  live = flow.log_prob(x, bijector_kwargs={'conditional_input': labels})
  np.testing.assert_allclose(facts['log_prob'], live, rtol=1e-5)
  np.testing.assert_allclose(facts['round_trip'], x, atol=1e-5)
  live_samples = saved_model.ExportedFlow(flow).sample_with_temperature(
      5, 0.5, [1, 2], 2)
  np.testing.assert_allclose(facts['samples'], live_samples, rtol=1e-5)
  assert facts['num_classes'] == 3
  assert facts['inputs']['serving_default'] == ['label', 'x']
  assert facts['inputs']['sample_with_temperature'] == [
      'label', 'n', 'seed', 'temperature']
  assert 'labels must lie in [0, 3)' in facts['bad_label']
