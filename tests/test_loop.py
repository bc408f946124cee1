"""`training.train_and_evaluate` (training/loop.py): resume exactness,
distribution strategies, non-finite steps, interruption, the learning-rate
schedule and the averaged weights, and the runs `evaluate` reads back."""

import dataclasses
import json
import os
import shutil
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from runs import PLAIN_RECIPE
from runs import TINY_IMAGE_MODEL
from runs import assert_same_weights
from runs import checkpoint_arrays
from runs import logged_scalars
from runs import small_config
from runs import train

from tf_realnvp import config as config_lib
from tf_realnvp import console
from tf_realnvp import data as data_lib
from tf_realnvp import evaluation
from tf_realnvp import training
from tf_realnvp import training_mode
from tf_realnvp.bijectors import VariationalDequantization
from tf_realnvp.config import experiment
from tf_realnvp.config import presets
from tf_realnvp.flows import realnvp
from tf_realnvp.training import optimizers
from tf_realnvp.training import strategies


RECIPE = dict(warmup_steps=10, lr_decay='cosine', lr_decay_floor=0.1,
              ema_decay=0.9)


def test_resume_with_recipe_and_batch_norm_is_exact(tmp_path, monkeypatch):
  """Stopped by Ctrl-C at step 20 of 40 (while the averaged weights are in
  the flow, for its samples) and resumed: the weights, Adam's moments, the
  averages, the batch-norm running statistics and the update count equal
  those of 40 uninterrupted steps."""
  config = lambda name: small_config(tmp_path / name, train_steps=40,
                                     checkpoint_every=1000,
                                     batch_norm='couplings', **RECIPE)
  straight = train(config('straight'))
  write_samples = evaluation.write_samples

  def interrupt_at_20(flow, run, model_dir, step, *args, **kwargs):
    if step == 20:  # Ctrl-C: the run stops after this step.
      os.kill(os.getpid(), signal.SIGINT)
    return write_samples(flow, run, model_dir, step, *args, **kwargs)

  with monkeypatch.context() as patch:
    patch.setattr(evaluation, 'write_samples', interrupt_at_20)
    with pytest.raises(training.TrainingInterrupted, match='SIGINT at step 20'):
      train(config('resumed'))
  assert evaluation.restore_flow(str(tmp_path / 'resumed'))[2] == 20
  resumed = train(config('resumed'))
  assert straight['step'] == resumed['step'] == 40
  assert straight['test_nll_nats'] == resumed['test_nll_nats']
  expected = checkpoint_arrays(tmp_path / 'straight')
  assert any(name.startswith('averages/') for name in expected)
  running = [name for name in expected if 'running_mean' in name]
  assert running and not np.allclose(expected[running[0]], 0.)
  assert_same_weights(expected, checkpoint_arrays(tmp_path / 'resumed'))


def test_evaluation_samples_and_export_use_the_averaged_weights(
    tmp_path, monkeypatch):
  """The reported test NLL is that of the averages, not of the training
  weights; the samples and the SavedModel come from the averages too, and
  `restore_flow` returns them."""
  config = small_config(tmp_path / 'run', train_steps=20, eval_every=20,
                        learning_rate=1e-2, export=True, **RECIPE)
  sampled_with = []
  write_samples = evaluation.write_samples

  def recording(flow, *args, **kwargs):
    sampled_with.append([v.numpy() for v in flow.trainable_variables])
    return write_samples(flow, *args, **kwargs)

  monkeypatch.setattr(evaluation, 'write_samples', recording)
  result = train(config)
  test_data = data_lib.make_dataset(
      'moons', 'test', config.batch_size, seed=config.seed, shuffle=False,
      repeat=False, drop_remainder=False).take(config.eval_batches)
  nll = {}
  for averaged in (True, False):
    _, flow, step = evaluation.restore_flow(str(tmp_path / 'run'), averaged)
    assert step == 20
    nll[averaged] = evaluation.Evaluator(
        flow, tf.distribute.get_strategy()).mean_nll(test_data)
  assert result['test_nll_nats'] == pytest.approx(nll[True], rel=1e-6)
  assert abs(nll[True] - nll[False]) > 1e-3
  _, averaged_flow, _ = evaluation.restore_flow(str(tmp_path / 'run'))
  for sampled, average in zip(sampled_with[-1],
                              averaged_flow.trainable_variables):
    np.testing.assert_array_equal(sampled, average.numpy())
  x = data_lib.sample_toy('moons', 100, seed=1)
  exported = tf.saved_model.load(str(tmp_path / 'run' / 'saved_model'))
  np.testing.assert_allclose(exported.log_prob(x), averaged_flow.log_prob(x),
                             rtol=1e-5)
  # TensorBoard has the rate each logged step's update used: that of the
  # updates before it (warmup at step 10, decay at step 20).
  schedule = optimizers.learning_rate_schedule(
      config.learning_rate, warmup_steps=config.warmup_steps,
      lr_decay=config.lr_decay, total_steps=config.train_steps,
      lr_decay_floor=config.lr_decay_floor)
  assert logged_scalars(tmp_path / 'run' / 'train', 'learning_rate') == {
      step: pytest.approx(float(schedule(step - 1)), rel=1e-6)
      for step in (10, 20)}


def test_a_batch_the_replicas_cannot_share_is_a_config_error(
    tmp_path, two_replicas, monkeypatch):
  monkeypatch.setattr(strategies, 'make_strategy',
                      lambda name, devices=None: two_replicas)
  with pytest.raises(experiment.ConfigError,
                     match='batch_size=63 must be divisible by the 2 replicas'):
    train(small_config(tmp_path, batch_size=63, strategy='mirrored'))


def test_train_step_runs_the_flow_in_training_mode_and_evaluation_does_not():
  config = small_config('unused', num_coupling_layers=2, hidden_units=(8,))
  strategy = strategies.make_strategy('one_device', ['/cpu:0'])
  with strategy.scope():
    flow = experiment.resolve(config).build_flow()
    optimizer = optimizers.make_optimizer(1e-3)
    optimizer.build(flow.trainable_variables)
    steps = training.TrainStep(flow, optimizer, strategy, 8, 0., 1., jit=False)
  modes = []
  log_prob = flow.log_prob

  def recording_log_prob(x):
    modes.append(training_mode.is_training())
    return log_prob(x)

  flow.log_prob = recording_log_prob
  data = tf.data.Dataset.from_tensors(tf.zeros([8, 2])).repeat()
  steps(iter(data))
  assert modes and all(modes)
  modes.clear()
  evaluation.Evaluator(flow, strategy).mean_nll(data.take(1))
  assert modes and not any(modes)


@pytest.fixture(scope='module')
def runs_to_resume(tmp_path_factory):
  """Runs of 2 steps, trained once and copied by each case: {initial: dir}."""
  root = tmp_path_factory.mktemp('runs_to_resume')
  runs = {}
  for name, initial in (('plain', {}), ('cosine', {'lr_decay': 'cosine'})):
    train(small_config(root / name, train_steps=2, **initial))
    runs[name] = root / name
  return runs


@pytest.mark.parametrize('initial, change', [
    ({}, {'num_coupling_layers': 6}),
    ({}, {'batch_size': 32}),
    ({}, {'ema_decay': 0.5}),
    ({}, {'learning_rate': 1e-4}),
    ({'lr_decay': 'cosine'}, {'warmup_steps': 1}),
])
def test_resume_refuses_another_model_data_stream_or_recipe(
    tmp_path, runs_to_resume, initial, change):
  shutil.copytree(runs_to_resume['cosine' if initial else 'plain'],
                  tmp_path / 'run')
  settings = {'train_steps': 4, **initial, **change}
  with pytest.raises(ValueError, match=next(iter(change))):
    train(small_config(tmp_path / 'run', **settings))


DECAYED = dict(learning_rate=1e-2, warmup_steps=4, lr_decay='cosine',
               log_every=1, eval_every=1000, checkpoint_every=1000)


def test_a_decayed_run_trains_further_and_resumes_exactly(
    tmp_path, monkeypatch):
  """40 steps, then 60 asked: from the rate reached at step 40 (0) the rate
  ramps to the schedule of a 60-step run and decays with it. The training
  loss does not jump at the extension, the run ends near one of 60 steps
  from the start, and the extension interrupted and resumed ends with the
  same weights as uninterrupted."""
  config = lambda name, steps: small_config(tmp_path / name,
                                            train_steps=steps, **DECAYED)
  straight = train(config('straight', 60))
  first = train(config('extended', 40))
  shutil.copytree(tmp_path / 'extended', tmp_path / 'resumed')
  extended = train(config('extended', 60))
  saved = config_lib.Config.load(str(tmp_path / 'extended'))
  assert saved.lr_plan == (dict(update=40, rate=0., ramp=2,
                                from_train_steps=40, train_steps=60),)
  assert saved.warmup_steps == 4 and saved.train_steps == 60
  losses = logged_scalars(tmp_path / 'extended' / 'train', 'nll_nats')
  print(f'test NLL: {first["test_nll_nats"]:.4f} at 40 steps, '
        f'{extended["test_nll_nats"]:.4f} extended to 60, '
        f'{straight["test_nll_nats"]:.4f} trained to 60 from the start; '
        'training loss at steps 36-45: '
        + ' '.join(f'{losses[step]:.3f}' for step in range(36, 46)))
  before, after = ([losses[step] for step in steps]
                   for steps in (range(36, 41), range(41, 46)))
  assert abs(np.mean(after) - np.mean(before)) < 0.1
  assert extended['test_nll_nats'] < first['test_nll_nats']
  assert abs(extended['test_nll_nats'] - straight['test_nll_nats']) < 0.25
  advance = training.Training._advance

  def ctrl_c_at_50(self):
    if self.current_step == 49:
      os.kill(os.getpid(), signal.SIGINT)  # The run stops after this step.
    return advance(self)
  with monkeypatch.context() as patch:
    patch.setattr(training.Training, '_advance', ctrl_c_at_50)
    with pytest.raises(training.TrainingInterrupted, match='at step 50'):
      train(config('resumed', 60))
  resumed = train(config('resumed', 60))
  assert resumed == dict(extended, model_dir=str(tmp_path / 'resumed'))
  assert_same_weights(checkpoint_arrays(tmp_path / 'extended'),
                      checkpoint_arrays(tmp_path / 'resumed'))


def test_defaults_left_to_a_resumed_run_keep_its_values(tmp_path):
  """A warmup that adapted to the first length stays when the run trains
  further (its default for the new length would differ); a shorter length
  than the run's step keeps its message."""
  settings = dict(PLAIN_RECIPE, learning_rate=1e-2, warmup_steps=None,
                  lr_decay=None, checkpoint_every=1000)
  train(small_config(tmp_path / 'run', train_steps=20, **settings))
  train(small_config(tmp_path / 'run', train_steps=30, **settings))
  saved = config_lib.Config.load(str(tmp_path / 'run'))
  assert (saved.warmup_steps, saved.lr_decay, saved.train_steps) == (
      2, 'cosine', 30)
  assert 'warmup_steps' not in saved.given and 'train_steps' in saved.given
  with pytest.raises(experiment.ConfigError, match='at step 30, past the 25'):
    train(small_config(tmp_path / 'run', train_steps=25, **settings))


def test_warmup_alone_lets_a_resumed_run_train_longer(tmp_path):
  """Without a decay the schedule does not depend on the run's length."""
  train(small_config(tmp_path / 'run', train_steps=2,
                                          warmup_steps=5))
  result = train(small_config(
      tmp_path / 'run', train_steps=4, warmup_steps=5))
  assert result['step'] == 4


def test_config_of_a_run_from_before_the_recipe_flags_means_no_recipe(
    tmp_path):
  """A config.json without the fields loads as a run without warmup, decay
  or averaging, even once their defaults turn them on."""
  small_config(tmp_path).save(str(tmp_path))
  path = tmp_path / 'config.json'
  values = json.loads(path.read_text())
  for name in config_lib.ABSENT_FIELD_VALUES:
    del values[name]
  path.write_text(json.dumps(values))

  @dataclasses.dataclass
  class LaterConfig(config_lib.Config):
    warmup_steps: int = 500
    lr_decay: str = 'cosine'
    ema_decay: float = 0.999

  loaded = LaterConfig.load(str(tmp_path))
  assert (loaded.warmup_steps, loaded.lr_decay, loaded.ema_decay) == (
      0, 'none', 0.)


def image_config(root, dequantization=None, **overrides):
  """A one-scale model of the 4x4 RGB images of `root/images.npz`, trained
  in `root/DEQUANTIZATION` (`root/run` if unset)."""
  values = dict(dataset=f'npz:{root / "images.npz"}',
                model_dir=str(root / (dequantization or 'run')),
                dequantization=dequantization, **TINY_IMAGE_MODEL,
                batch_size=8, train_steps=2, eval_batches=1, export=False,
                **PLAIN_RECIPE)
  values.update(overrides)
  return config_lib.Config(**values)


@pytest.fixture(scope='module')
def dequantized_runs(tmp_path_factory):
  """The folder of `images.npz` and of a 2-step image run of each
  dequantization (`image_config`)."""
  root = tmp_path_factory.mktemp('dequantized')
  rng = np.random.RandomState(0)
  np.savez(root / 'images.npz',
           train=rng.randint(0, 256, (16, 4, 4, 3)).astype(np.uint8),
           test=rng.randint(0, 256, (8, 4, 4, 3)).astype(np.uint8))
  for dequantization in realnvp.DEQUANTIZATIONS:
    train(image_config(root, dequantization))
  return root


def first_layer(flow):
  """The first of the flow's data-to-latent layers (`flows.flow.sequence`
  chains them last first, and the flow samples through their inverse)."""
  return flow.bijector.bijector.bijectors[-1]


def test_a_variational_run_trains_its_noise_flow_and_restores_it(
    dequantized_runs):
  model_dir = dequantized_runs / 'variational'
  saved = json.loads((model_dir / 'config.json').read_text())
  assert saved['dequantization'] == 'variational'
  _, flow, step = evaluation.restore_flow(str(model_dir))
  assert step == 2
  layer = first_layer(flow)
  assert isinstance(layer, VariationalDequantization)
  # The checkpoint holds every variable of the flow, the noise flow's too.
  tf.train.Checkpoint(flow=flow).read(tf.train.latest_checkpoint(
      str(model_dir / 'checkpoints'))).assert_existing_objects_matched()
  # The noise flow starts as the identity; 2 updates moved it.
  noise_and_image = tf.random.stateless_normal([2, 4, 4, 6], seed=[0, 1])
  moved = layer.noise_map.forward(noise_and_image) - noise_and_image
  assert np.abs(moved[..., :3]).max() > 1e-4
  np.testing.assert_array_equal(moved[..., 3:], 0.)  # The image is kept.
  uniform = evaluation.restore_flow(str(dequantized_runs / 'uniform'))[1]
  assert not isinstance(first_layer(uniform), VariationalDequantization)


@pytest.mark.parametrize('trained, asked', [('variational', 'uniform'),
                                            ('uniform', 'variational')])
def test_resume_with_the_other_dequantization_is_one_line_and_exit_2(
    tmp_path, dequantized_runs, capsys, trained, asked):
  shutil.copytree(dequantized_runs / trained, tmp_path / 'run')

  def files():
    run = tmp_path / 'run'
    return {str(path.relative_to(run)): path.read_bytes()
            for path in run.rglob('*') if path.is_file()}
  before = files()
  with pytest.raises(SystemExit) as exit_info:
    console.exit_on_errors(train, {experiment.ConfigError: 2})(image_config(
        dequantized_runs, asked, model_dir=str(tmp_path / 'run'),
        train_steps=4))
  stderr = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert stderr.count('\n') == 1, stderr
  assert (f"other settings (dequantization: '{trained}' on disk, "
          f"'{asked}' asked). Use another --model_dir" in stderr), stderr
  assert files() == before


def test_a_run_from_before_dequantization_resumes_and_evaluates_as_uniform(
    tmp_path, dequantized_runs, monkeypatch):
  """A config.json without the field is a uniform run, whatever the
  default: with other defaults (learned dequantization, another flow) it is
  evaluated as uniform, and it resumes as the run it was (`KEPT_ON_RESUME`)
  with a command that leaves them unset."""
  shutil.copytree(dequantized_runs / 'uniform', tmp_path / 'uniform')
  path = tmp_path / 'uniform' / 'config.json'
  values = json.loads(path.read_text())
  del values['dequantization']
  values['given'].remove('dequantization')
  values['given'].remove('flow')  # Trained when its flow was the default.
  path.write_text(json.dumps(values))
  with monkeypatch.context() as patch:
    patch.setitem(presets.IMAGE_DEFAULTS, 'dequantization', 'variational')
    patch.setitem(presets.IMAGE_DEFAULTS, 'flow', 'glow')
    _, flow, _ = evaluation.restore_flow(str(tmp_path / 'uniform'))
    assert not isinstance(first_layer(flow), VariationalDequantization)
    result = train(image_config(dequantized_runs,
                                model_dir=str(tmp_path / 'uniform'),
                                train_steps=4, flow=None))
  assert result['step'] == 4
  resumed = config_lib.Config.load(str(tmp_path / 'uniform'))
  assert (resumed.dequantization, resumed.flow) == ('uniform', 'realnvp')
  assert 'flow' not in resumed.given


def test_a_2d_run_of_the_earlier_defaults_resumes_with_them(tmp_path):
  """A 2-D run trained when the defaults were 256 points per batch and 8
  spline bins (recorded, not given) resumes with them; --restart starts over
  with today's."""
  common = dict(dataset='moons', model_dir=str(tmp_path), jit=False,
                num_coupling_layers=2, hidden_units=(8,), eval_batches=1,
                export=False)
  train(config_lib.Config(train_steps=2, batch_size=256, spline_bins=8,
                          **common))
  saved = config_lib.Config.load(str(tmp_path))
  dataclasses.replace(saved, given=tuple(
      name for name in saved.given
      if name not in ('batch_size', 'spline_bins'))).save(str(tmp_path))
  assert train(config_lib.Config(train_steps=4, **common))['step'] == 4
  resumed = config_lib.Config.load(str(tmp_path))
  assert (resumed.batch_size, resumed.spline_bins) == (256, 8)
  assert not {'batch_size', 'spline_bins'} & set(resumed.given)
  restarted = experiment.resolve(config_lib.Config(restart=True, **common))
  assert (restarted.config.batch_size, restarted.config.spline_bins) == (
      presets.VECTOR_DEFAULTS['batch_size'],
      presets.VECTOR_FLOW_DEFAULTS['nsf']['spline_bins'])


def _with_nan_batches(monkeypatch, bad_batches):
  """Makes the training stream put NaNs in the batches numbered `bad_batches`."""
  batches = data_lib.batches

  def poisoned(source, split, *args, **kwargs):
    dataset = batches(source, split, *args, **kwargs)
    if split != 'train':
      return dataset
    bad = tf.constant(bad_batches, tf.int64)
    return dataset.enumerate().map(lambda i, x: tf.where(
        tf.reduce_any(tf.equal(i, bad)), tf.fill(tf.shape(x), np.nan), x))
  monkeypatch.setattr(data_lib, 'batches', poisoned)


def test_nan_batch_is_skipped_and_counted(tmp_path, monkeypatch):
  _with_nan_batches(monkeypatch, [3, 7])
  result = train(small_config(tmp_path / 'run',
                                                   train_steps=10))
  assert result['bad_steps'] == 2
  assert np.isfinite(result['test_nll_nats'])
  weights = checkpoint_arrays(tmp_path / 'run')
  assert all(np.all(np.isfinite(w)) for w in weights.values())


def test_persistent_nans_stop_with_clear_error(tmp_path, monkeypatch):
  _with_nan_batches(monkeypatch, list(range(100)))
  with pytest.raises(training.TrainingDivergedError, match='non-finite'):
    train(small_config(tmp_path / 'run', train_steps=50,
                                            max_bad_steps=3))


# Two replicas sum the gradients in another order, a float32 round-off that
# Adam turns into up to a learning rate's step where a gradient is near zero,
# as ActNorm's are right after its data-dependent init; an ActNorm initialized
# on a replica's share instead of the whole batch differs by about 0.1.
@pytest.mark.parametrize('flow, atol, recipe', [
    ('realnvp', 1e-6, PLAIN_RECIPE),
    ('glow', 1e-4, dict(warmup_steps=2, lr_decay='cosine', ema_decay=0.5)),
])
def test_mirrored_two_devices_matches_one_device(tmp_path, flow, atol, recipe,
                                                 two_replicas, monkeypatch):
  """Also for Glow, whose ActNorm must initialize alike on both replicas, and
  with the learning-rate schedule and the averages (mirrored like the
  weights, swapped in for evaluation on both replicas)."""
  make_strategy = strategies.make_strategy
  monkeypatch.setattr(strategies, 'make_strategy', lambda name, devices=None: (
      two_replicas if name == 'mirrored' else make_strategy(name, devices)))
  assert len(two_replicas.extended.worker_devices) == 2
  weights = {}
  for strategy in ('one_device', 'mirrored'):
    values = dict(dataset='moons', model_dir=str(tmp_path / strategy),
                  flow=flow, strategy=strategy, jit=False, batch_size=64,
                  train_steps=6,
                  num_coupling_layers=2, hidden_units=[16], eval_every=6,
                  eval_batches=1, export=False, **PLAIN_RECIPE)
    values.update(recipe)
    train(config_lib.Config(**values), devices=['/cpu:0'])
    weights[strategy] = checkpoint_arrays(tmp_path / strategy)
  assert weights['one_device'].keys() == weights['mirrored'].keys()
  for name, value in weights['one_device'].items():
    np.testing.assert_allclose(weights['mirrored'][name], value, rtol=1e-5,
                               atol=atol, err_msg=name)


@pytest.mark.parametrize('flow', ['nice', 'maf', 'iaf', 'ffjord'])
def test_other_flows_train_and_stay_exact_bijections(tmp_path, flow):
  """`--flow` trains each kind: the restored flow's NLL is below the initial
  flow's, and after the updates it is still a bijection whose inverse undoes
  its forward (MADE's masks survive the optimizer)."""
  config = small_config(
      tmp_path / flow, flow=flow, hidden_units=(16,), train_steps=20,
      eval_every=20, learning_rate=1e-2,
      num_coupling_layers=None if flow == 'ffjord' else 2)
  keras.utils.set_random_seed(config.seed)
  initial = experiment.resolve(config).build_flow()  # The weights training starts from.
  result = train(config)
  assert result['step'] == 20 and result['bad_steps'] == 0
  _, restored, step = evaluation.restore_flow(str(tmp_path / flow))
  assert step == 20 and restored.name == flow
  x = tf.constant(data_lib.sample_toy('moons', 1000, seed=1))
  nll = -float(tf.reduce_mean(restored.log_prob(x)))
  assert nll < -float(tf.reduce_mean(initial.log_prob(x))) - 0.05
  np.testing.assert_allclose(
      restored.bijector.forward(restored.bijector.inverse(x)), x, atol=1e-3)


def test_cifar10_mock_train_and_evaluate(tmp_path):
  model_dir = tmp_path / 'cifar'
  config = config_lib.Config(
      dataset='cifar10', model_dir=str(model_dir), batch_size=8,
      train_steps=4, num_scales=2, num_res_blocks=1, num_filters=4,
      eval_every=4, eval_batches=1, export=False)
  with tfds.testing.mock_data(num_examples=16):
    result = train(config)
    assert result['step'] == 4 and result['bad_steps'] == 0
    assert 0. < result['test_bits_per_dim'] < 20.
    assert (model_dir / 'samples' / 'step_4.png').exists()
    evaluated = evaluation.evaluate(str(model_dir), num_dequantizations=2,
                                    eval_batches=1, temperature=0.5)
  assert evaluated['step'] == 4
  assert abs(evaluated['test_bits_per_dim'] - result['test_bits_per_dim']) < 0.5
  assert (model_dir / 'samples' / 'step_4_t0.5.png').exists()
  assert json.loads((model_dir / 'eval.json').read_text())['num_dequantizations'] == 2


def test_evaluate_reports_the_importance_weighted_bound_of_a_variational_run(
    dequantized_runs, tmp_path):
  """With `importance_samples=K`, the one-draw bound averages the same K
  draws by default, and each image's importance-weighted bound averages the
  draws' likelihoods instead of their logs: never above the draws' mean
  bits/dim (Jensen), below it for a learned noise."""
  model_dir = tmp_path / 'run'
  shutil.copytree(dequantized_runs / 'variational', model_dir)
  result = evaluation.evaluate(str(model_dir), importance_samples=3)
  assert result['importance_samples'] == result['num_dequantizations'] == 3
  weighted = result['test_bits_per_dim_importance_weighted']
  assert weighted < result['test_bits_per_dim'] - 1e-4
  saved = json.loads((model_dir / 'eval.json').read_text())
  assert saved['test_bits_per_dim_importance_weighted'] == weighted
