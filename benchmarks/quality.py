r"""How well does a RealNVP learn per step and per second? Side by side, real images.

    python -m benchmarks.quality --seeds=0,1,2 --out_dir=quality_results \
        --reference_dir=/scratch/real-nvp \
        --reference_python=/scratch/refvenv/bin/python

Trains each configuration of `--configs` (see `CONFIGS`) from the same seed
on the same batches: random 32x32 crops of the training tiles of the
photograph Matplotlib ships (`benchmarks.photo_patches`), dequantized with
the same noise, `--steps` steps of `--batch_size`. Test bits/dim is measured
on the test patches (the other colour of the checkerboard of tiles, never
trained on), one fixed dequantization draw, at each step of `--eval_at`.
Our configurations train with the trainer's own step
(`tf_realnvp.training.TrainStep`: the objective, gradient clipping, the skip of
non-finite steps) on one device.

With `--reference_dir` (a checkout of the PyTorch reference implementation,
prepared as BENCHMARKS.md says) and `--reference_python` (its virtual
environment's interpreter), the reference is a column of the same run:
`benchmarks/reference_run.py` trains it in its own process on the same
batches, with its own model, loss, weight decay and clipping.

Each run also records its median seconds per training step (measured during
training, evaluation excluded), so the report gives test bits/dim both at
equal steps and at equal wall-clock time, and the time each configuration
takes to reach the bits/dim the reference (or the first configuration)
ends with. Runs are cached in `--out_dir` by
configuration, seed and settings: adding a configuration reruns nothing else.
Writes `quality.json` and `quality.md`.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from benchmarks import curves
from benchmarks import hardware
from benchmarks import photo_patches
import tf_realnvp
from tf_realnvp import training
from tf_realnvp.flows import objective
from tf_realnvp.training import optimizers

# Our configurations: `tf_realnvp.RealNVP` keyword arguments beyond the
# architecture flags, and the training recipe (`recipe_defaults`' keys).
CONFIGS = {
    'default': {},
    'no_l2': dict(l2=0.),
    'batch_norm': dict(conditioner_options=dict(batch_norm=True)),
    'batch_norm_couplings': dict(batch_norm_couplings=True),
    'concat_relu': dict(conditioner_options=dict(concat_relu_input=True)),
    'skips': dict(conditioner_options=dict(skip_outputs=True)),
    'wide_squeeze': dict(double_filters_at_squeeze=True),
    'reference_net': dict(conditioner_options=dict(
        batch_norm=True, concat_relu_input=True, skip_outputs=True)),
    'reference_arch': dict(double_filters_at_squeeze=True,
                           conditioner_options=dict(
                               batch_norm=True, concat_relu_input=True,
                               skip_outputs=True)),
    'warmup_cosine': dict(warmup_steps=20, lr_decay='cosine'),
    'ema': dict(ema_decay=0.99),
    # bfloat16 s/t networks; log-dets, the stem, residual stream and head
    # stay float32 (tf_realnvp.networks).
    'mixed_bfloat16': dict(network_dtype='mixed_bfloat16'),
    # The modelling gains of the field, each on the mixed default above.
    'variational': dict(network_dtype='mixed_bfloat16',
                        dequantization='variational'),
    'spline': dict(network_dtype='mixed_bfloat16', coupling='spline'),
    'glow': dict(network_dtype='mixed_bfloat16', step='glow'),
    'recipe': dict(network_dtype='mixed_bfloat16', warmup_steps=20,
                   lr_decay='cosine'),
}
# Their combinations with Glow steps; the default training in less memory
# (tf_realnvp.recompute), whose curves should be the default's.
CONFIGS.update({
    'glow_variational': dict(CONFIGS['glow'], dequantization='variational'),
    'glow_recipe': dict(CONFIGS['recipe'], step='glow'),
    'recompute_networks': dict(CONFIGS['mixed_bfloat16'],
                               recompute='networks'),
    'recompute_invertible': dict(CONFIGS['mixed_bfloat16'],
                                 recompute='invertible'),
})
REFERENCE = 'reference'

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', ['default'],
                  f'Our configurations to train, from {list(CONFIGS)}.')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds: weights, crops, noise.')
flags.DEFINE_integer('num_scales', 2, 'Scales of both models.')
flags.DEFINE_integer('num_res_blocks', 4, 'Residual blocks per s/t network.')
flags.DEFINE_integer('num_filters', 32, 'Feature maps of the first scale.')
flags.DEFINE_integer('batch_size', 32, 'Crops per step.')
flags.DEFINE_list('eval_at', ['100', '200', '400'],
                  'Steps at which test bits/dim is measured; the last ends '
                  'the run.')
flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.')
flags.DEFINE_float('l2', 5e-5, 'L2 coefficient on the weight-norm gains.')
flags.DEFINE_float('clip_norm', 100., 'Gradient-norm clip.')
flags.DEFINE_integer('test_patches', 512, 'Test patches (a grid).')
flags.DEFINE_string('reference_dir', None,
                    'Prepared checkout of the PyTorch reference; omit to '
                    'leave the reference column out.')
flags.DEFINE_string('reference_python', sys.executable,
                    "Interpreter of the reference's virtual environment.")
flags.DEFINE_string('out_dir', 'quality_results', 'Results and cache.')

PATCH = 32
EVAL_BATCH = 64


def recipe_defaults():
  """The training recipe of a configuration that sets none of its own."""
  return dict(learning_rate=FLAGS.learning_rate, l2=FLAGS.l2,
              clip_norm=FLAGS.clip_norm, warmup_steps=0, lr_decay='none',
              ema_decay=0.)


def settings():
  """Everything a cached run depends on besides its configuration and seed."""
  return dict(num_scales=FLAGS.num_scales,
              num_res_blocks=FLAGS.num_res_blocks,
              num_filters=FLAGS.num_filters, batch_size=FLAGS.batch_size,
              eval_at=[int(s) for s in FLAGS.eval_at],
              learning_rate=FLAGS.learning_rate, l2=FLAGS.l2,
              clip_norm=FLAGS.clip_norm, test_patches=FLAGS.test_patches)


def data(seed, tiles, test_patches, steps):
  """`(train, test)` dequantized intensities in `[0, 256)`, float32 arrays.

  `train` is `[steps, batch, 32, 32, 3]`: crop positions and noise are
  functions of `seed` and the step alone.
  """
  train = np.stack([tf_realnvp.dequantize(
      photo_patches.random_patches(tiles, FLAGS.batch_size, PATCH,
                                   tf.constant([seed, step])),
      seed=tf.constant([seed + 1, step])).numpy() for step in range(steps)])
  test = tf_realnvp.dequantize(
      test_patches, seed=tf.constant([seed + 2, 0])).numpy()
  return train, test


def test_bits_per_dim(log_prob, test):
  nll = np.concatenate([-log_prob(test[i:i + EVAL_BATCH]).numpy()
                        for i in range(0, len(test), EVAL_BATCH)])
  return float(objective.nats_to_bits_per_dim(nll.mean(), test.shape[1:]))


def train_ours(config, seed, train, test):
  """Trains our configuration `config` on `train`; its figures."""
  options = dict(CONFIGS[config])
  recipe = {key: options.pop(key, default)
            for key, default in recipe_defaults().items()}
  eval_at = settings()['eval_at']
  keras.utils.set_random_seed(seed)
  strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
  with strategy.scope():
    flow = tf_realnvp.RealNVP(
        tuple(test.shape[1:]), num_scales=FLAGS.num_scales,
        num_res_blocks=FLAGS.num_res_blocks, num_filters=FLAGS.num_filters,
        validate_args=False, **options)
    optimizer = optimizers.make_optimizer(
        recipe['learning_rate'], warmup_steps=recipe['warmup_steps'],
        lr_decay=recipe['lr_decay'], total_steps=eval_at[-1],
        ema_decay=recipe['ema_decay'])
    optimizer.build(flow.trainable_variables)
    optimizers.start_averages(optimizer, flow.trainable_variables)
    train_step = training.TrainStep(flow, optimizer, strategy,
                                    FLAGS.batch_size, recipe['l2'],
                                    recipe['clip_norm'], jit=False)
  iterator = iter(tf.data.Dataset.from_tensor_slices(train))
  log_prob = tf.function(flow.log_prob)
  result = dict(bits_per_dim={}, parameters=int(sum(
      np.prod(v.shape) for v in flow.trainable_variables)))
  step_seconds = []
  for step in range(1, eval_at[-1] + 1):
    start = time.perf_counter()
    float(train_step(iterator)[0])
    step_seconds.append(time.perf_counter() - start)
    if step in eval_at:
      with optimizers.averaged_weights(optimizer, flow.trainable_variables):
        result['bits_per_dim'][step] = test_bits_per_dim(log_prob, test)
      logging.info('%s seed %d step %d: test bits/dim %.4f', config, seed,
                   step, result['bits_per_dim'][step])
  result['seconds_per_step'] = float(np.median(step_seconds[1:]))
  return result


def train_reference(seed, train, test, scratch):
  """Trains the reference in its own process on the same data."""
  os.makedirs(scratch, exist_ok=True)
  path = os.path.join(scratch, f'data_seed{seed}.npz')
  np.savez(path, train=train / 256., test=test / 256.)
  out = os.path.join(scratch, f'reference_seed{seed}.json')
  subprocess.run([
      FLAGS.reference_python,
      os.path.join(os.path.dirname(__file__), 'reference_run.py'),
      f'--reference_dir={FLAGS.reference_dir}', f'--data={path}',
      f'--out={out}', f'--num_scales={FLAGS.num_scales}',
      f'--num_blocks={FLAGS.num_res_blocks}',
      f'--mid_channels={FLAGS.num_filters}',
      f'--learning_rate={FLAGS.learning_rate}',
      f'--weight_decay={FLAGS.l2}', f'--max_grad_norm={FLAGS.clip_norm}',
      f'--eval_at={",".join(FLAGS.eval_at)}', f'--seed={seed}'], check=True)
  os.remove(path)
  with open(out) as f:
    result = json.load(f)
  result['bits_per_dim'] = {int(k): v for k, v in
                            result['bits_per_dim'].items()}
  return result


def library_version():
  """A digest of the `tf_realnvp` sources: the code our runs measured."""
  digest = hashlib.sha256()
  root = os.path.dirname(tf_realnvp.__file__)
  for folder, _, files in sorted(os.walk(root)):
    for name in sorted(f for f in files if f.endswith('.py')):
      with open(os.path.join(folder, name), 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()[:16]


def cached_run(name, seed, run):
  """`run()`, or its result from an earlier call with the same settings.

  Our runs are also keyed on `library_version()`, so a change to the library
  reruns them; the reference's are not.
  """
  key = hashlib.sha256(json.dumps(
      [name, CONFIGS.get(name), seed, settings(),
       None if name == REFERENCE else library_version()],
      sort_keys=True).encode()).hexdigest()[:16]
  path = os.path.join(FLAGS.out_dir, 'cache', f'{name}_{seed}_{key}.json')
  if os.path.exists(path):
    with open(path) as f:
      result = json.load(f)
    result['bits_per_dim'] = {int(k): v for k, v in
                              result['bits_per_dim'].items()}
    return result
  result = run()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f)
  return result


def markdown(runs, seeds):
  """Tables at equal steps and at the reference's (or first run's) times."""
  eval_at = settings()['eval_at']
  names = list(runs)
  lines = ['Test bits/dim at equal steps, mean ± standard deviation over '
           f'seeds {", ".join(map(str, seeds))}:', '',
           '| configuration | weights | s/step | '
           + ' | '.join(f'step {s}' for s in eval_at) + ' |',
           '|---|---|---|' + '---|' * len(eval_at)]
  for name in names:
    by_seed = runs[name]
    lines.append(
        f'| {name} | {by_seed[0]["parameters"]:,} | '
        f'{np.mean([r["seconds_per_step"] for r in by_seed]):.3f} | '
        + ' | '.join(curves.mean_spread([r['bits_per_dim'][s]
                                         for r in by_seed])
                     for s in eval_at) + ' |')
  pace_name = REFERENCE if REFERENCE in runs else names[0]
  pace = runs[pace_name]
  times = [[run['seconds_per_step'] * step for run in pace] for step in eval_at]
  lines += ['', f'Test bits/dim at equal wall-clock time: at the time '
            f'`{pace_name}` takes to reach each step (mean over seeds; each '
            'seed is compared at its own run\'s time), each run shows its '
            'last evaluation within that time, so a run that is faster than '
            'the evaluation grid shows a figure from fewer steps than it '
            'could have trained:', '',
            '| configuration | ' + ' | '.join(
                f'{np.mean(t):.0f} s (step {s})' for t, s in zip(times, eval_at))
            + ' |', '|---|' + '---|' * len(times)]
  for name in names:
    lines.append(f'| {name} | ' + ' | '.join(
        curves.mean_spread([curves.at_time(run, t)
                            for run, t in zip(runs[name], seed_times)])
        for seed_times in times) + ' |')
  return '\n'.join(lines + time_to_quality(runs, pace_name)) + '\n'


def time_to_quality(runs, pace_name):
  """Table lines: the seconds each configuration takes to reach the test
  bits/dim `pace_name` ends with (each seed its own run's), and the ratio to
  `pace_name`'s own time."""
  last = settings()['eval_at'][-1]
  targets = [run['bits_per_dim'][last] for run in runs[pace_name]]
  pace_seconds = [curves.time_to_reach(run, target)
                  for run, target in zip(runs[pace_name], targets)]
  lines = ['', f'Time to quality: the seconds each run takes to reach the '
           f'test bits/dim `{pace_name}` reaches at step {last} (each seed its '
           f"own; interpolated between evaluations), and the ratio to "
           f"`{pace_name}`'s own time:", '',
           '| configuration | seconds | ratio | seeds that reach it |',
           '|---|---|---|---|']
  for name, by_seed in runs.items():
    seconds = [curves.time_to_reach(run, target)
               for run, target in zip(by_seed, targets)]
    ratios = [s / p if s is not None else None
              for s, p in zip(seconds, pace_seconds)]
    reached = sum(s is not None for s in seconds)
    lines.append(f'| {name} | {curves.mean_spread(seconds, 0)} | '
                 f'{curves.mean_spread(ratios, 2)} | '
                 f'{reached} of {len(seconds)} |')
  return lines


def main(argv):
  del argv
  unknown = set(FLAGS.configs) - set(CONFIGS)
  if unknown:
    raise app.UsageError(f'Unknown --configs {sorted(unknown)}; known: '
                         f'{sorted(CONFIGS)}.')
  tiles, test_patches = photo_patches.split_photo(
      photo_patches.photo(), PATCH, FLAGS.test_patches)
  seeds = [int(s) for s in FLAGS.seeds]
  steps = settings()['eval_at'][-1]
  names = ([REFERENCE] if FLAGS.reference_dir else []) + list(FLAGS.configs)
  runs = {name: [] for name in names}
  for seed in seeds:
    train, test = data(seed, tiles, test_patches, steps)
    for name in names:
      if name == REFERENCE:
        run = lambda: train_reference(seed, train, test, FLAGS.out_dir)
      else:
        run = lambda name=name: train_ours(name, seed, train, test)
      runs[name].append(cached_run(name, seed, run))
      logging.info('%s seed %d: %s', name, seed, runs[name][-1])
  text = markdown(runs, seeds)
  with open(os.path.join(FLAGS.out_dir, 'quality.json'), 'w') as f:
    json.dump(dict(settings=settings(), seeds=seeds, runs=runs,
                   machine=hardware.description(),
                   date=time.strftime('%Y-%m-%d')), f, indent=2)
  with open(os.path.join(FLAGS.out_dir, 'quality.md'), 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  app.run(main)
