r"""RealNVP against NICE, NSF, MAF, IAF, Glow and FFJORD on 2-D toy densities.

    python -m benchmarks.compare_flows --out_dir=compare_flows_results

Every flow of `--flows` (`tf_realnvp.flows`, in its default size) is trained
on every dataset of `--datasets` (the 2-D toys of `tf_realnvp.data.toys`)
exactly as `python train.py --dataset=D --flow=K` trains it: the same
trainer, objective and defaults (`tf_realnvp.config.experiment`: the 2-D
recipes of RealNVP and NSF, the paper's for the others; 6000 steps of 256
points), from the same `--seed`; `--steps` and `--batch_size` override the
defaults for all. Then it measures

- test NLL in nats, `-mean log p(x)` over the 10,000 test points; for
  8gaussians also the gap to the true density, the test NLL minus
  `-mean log p*(x)` of the exact mixture (the entropy estimate, a lower bound
  of any model's NLL up to sampling noise);
- train time: wall clock of the whole training run (tracing, the steps, the
  final evaluation and checkpoint);
- the time to draw 10,000 samples and to evaluate `log_prob` on the 10,000
  test points, each the median of `TIMED_CALLS` calls of a `tf.function`
  after a tracing call;
- the number of trainable parameters;

Then, for each flow of `--dimension_flows`, untrained, on vectors of each
size D of `--dimensions`, the same sampling and `log_prob` times: where an
autoregressive flow needs D sequential network passes (MAF's sampling,
IAF's density) the time grows with D, where it needs one pass it does not.

Writes `compare_flows.json`, `compare_flows.md` (the tables) and
`densities.png` (each flow's density on each dataset, beside a histogram of
the training data) to `--out_dir`.
"""

import json
import os
import shutil
import time

from absl import app
from absl import flags
from absl import logging
import keras
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from tf_realnvp import config
from tf_realnvp import data
from tf_realnvp import evaluation
from tf_realnvp import flows
from tf_realnvp import training
from tf_realnvp.config import experiment

FLAGS = flags.FLAGS
flags.DEFINE_list('flows', list(flows.FLOWS),
                  f'Flows to train, from {list(flows.FLOWS)}.')
flags.DEFINE_list('datasets', list(data.TOY_DATASETS),
                  f'2-D datasets, from {list(data.TOY_DATASETS)}.')
flags.DEFINE_integer('steps', None, 'Training steps per flow and dataset '
                     '(default: train.py\'s).')
flags.DEFINE_integer('batch_size', None, 'Points per training batch (default: '
                     'train.py\'s).')
flags.DEFINE_string('out_dir', 'compare_flows_results',
                    'Where to write the table, its JSON and the figure.')
flags.DEFINE_integer('seed', 0, 'Seed of the initial weights, the minibatches '
                     'and the samples.')
flags.DEFINE_list('dimension_flows', ['realnvp', 'maf', 'iaf'],
                  'Flows whose sampling and log_prob times are also measured '
                  'on vectors of --dimensions entries (untrained).')
flags.DEFINE_list('dimensions', ['2', '8', '32'],
                  'Event sizes D of the timing by dimension.')

NUM_SAMPLES = 10_000
TIMED_CALLS = 3
# The heat-maps show the density on [-EXTENT, EXTENT]^2, RESOLUTION points a side.
EXTENT = 5.
RESOLUTION = 100

_COLUMNS = (
    ('flow', 'flow', '{}'),
    ('dataset', 'dataset', '{}'),
    ('test_nll', 'test NLL (nats)', '{:.3f}'),
    ('gap_to_true_density', 'gap to true density (nats)', '{:.3f}'),
    ('steps', 'steps', '{}'),
    ('batch_size', 'batch', '{}'),
    ('learning_rate', 'learning rate', '{:g}'),
    ('lr_decay', 'decay', '{}'),
    ('train_seconds', 'train (s)', '{:.1f}'),
    ('sample_seconds', 'sample 10k (s)', '{:.3f}'),
    ('log_prob_seconds', 'log_prob 10k (s)', '{:.3f}'),
    ('parameters', 'parameters', '{:,}'),
)


def train(kind, dataset, model_dir, seed, **overrides):
  """Trains `kind` on `dataset` as train.py would, with `overrides` of its
  config; returns the run's settings, its final metrics and the flow."""
  shutil.rmtree(model_dir, ignore_errors=True)
  settings = dict(dataset=dataset, flow=kind, model_dir=model_dir, seed=seed,
                  export=False, **overrides)
  run = experiment.resolve(config.Config(**settings))
  once = run.total_steps()  # One evaluation and checkpoint, at the end.
  run = experiment.resolve(config.Config(
      **settings, eval_every=once, checkpoint_every=once))
  result = training.train_and_evaluate(run)
  _, flow, _ = evaluation.restore_flow(model_dir)
  return run.config, result, flow


def median_seconds(fn):
  """Median wall time of `TIMED_CALLS` calls of `fn` after a first call."""
  fn()
  seconds = []
  for _ in range(TIMED_CALLS):
    start = time.perf_counter()
    np.asarray(fn())
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds))


def sample_and_log_prob_seconds(flow, log_prob, points, seed):
  """Median seconds of `NUM_SAMPLES` samples and of `log_prob(points)`."""
  sample = tf.function(lambda: flow.sample(
      NUM_SAMPLES, seed=tf.constant([seed, 0])))
  return dict(sample_seconds=median_seconds(sample),
              log_prob_seconds=median_seconds(lambda: log_prob(points)))


def density_grid():
  """`[RESOLUTION^2, 2]` points covering the plotted square, row by row."""
  axis = np.linspace(-EXTENT, EXTENT, RESOLUTION, dtype=np.float32)
  return np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)


def compare_one(kind, dataset, work_dir, seed, **overrides):
  """Trains one flow on one dataset; returns its table row and density grid."""
  keras.utils.set_random_seed(seed)
  test_points = tf.constant(data.sample_toy(
      dataset, *data.TOY_SPLITS['test']))
  start = time.perf_counter()
  settings, result, flow = train(
      kind, dataset, os.path.join(work_dir, f'{kind}_{dataset}'), seed,
      **overrides)
  train_seconds = time.perf_counter() - start
  log_prob = tf.function(flow.log_prob)
  test_nll = result['test_nll_nats']
  row = dict(
      flow=kind, dataset=dataset, test_nll=test_nll,
      steps=settings.train_steps, batch_size=settings.batch_size,
      learning_rate=settings.learning_rate, lr_decay=settings.lr_decay,
      train_seconds=train_seconds,
      **sample_and_log_prob_seconds(flow, log_prob, test_points, seed),
      parameters=sum(int(np.prod(v.shape)) for v in flow.trainable_variables))
  if dataset == '8gaussians':
    row['true_nll'] = -float(np.mean(
        data.toy_log_prob_8gaussians(test_points.numpy())))
    row['gap_to_true_density'] = test_nll - row['true_nll']
  density = np.exp(log_prob(density_grid()).numpy())
  logging.info('%s on %s: test NLL %.3f nats, %.1f s of training.', kind,
               dataset, test_nll, train_seconds)
  return row, density.reshape(RESOLUTION, RESOLUTION)


def time_by_dimension(kind, dims, seed):
  """Sampling and log_prob seconds of an untrained flow on `[dims]` vectors."""
  keras.utils.set_random_seed(seed)
  flow = flows.make_flow(kind, (dims,))
  points = tf.random.stateless_normal((NUM_SAMPLES, dims), [seed, 1])
  return dict(flow=kind, dims=dims, **sample_and_log_prob_seconds(
      flow, tf.function(flow.log_prob), points, seed))


def dimension_table(rows):
  lines = [
      '',
      f'Untrained flows in their default size on D-dimensional vectors: '
      f'seconds for {NUM_SAMPLES:,} samples and for log_prob of '
      f'{NUM_SAMPLES:,} points (medians of {TIMED_CALLS} calls).',
      '',
      '| flow | D | sample 10k (s) | log_prob 10k (s) |',
      '|---|---|---|---|']
  lines += [f'| {r["flow"]} | {r["dims"]} | {r["sample_seconds"]:.3f} | '
            f'{r["log_prob_seconds"]:.3f} |' for r in rows]
  return '\n'.join(lines) + '\n'


def summary_table(rows):
  """Test NLL with a row per flow and a column per dataset, then its costs.

  Times and parameters are the means over the datasets (the same network
  sizes everywhere; FFJORD's solver takes more steps on some densities).
  """
  kinds = list(dict.fromkeys(r['flow'] for r in rows))
  datasets = list(dict.fromkeys(r['dataset'] for r in rows))
  nll = {(r['flow'], r['dataset']): r['test_nll'] for r in rows}
  lines = [
      '| flow | ' + ' | '.join(datasets)
      + ' | train (s) | sample 10k (s) | log_prob 10k (s) | parameters |',
      '|' + '---|' * (len(datasets) + 5)]
  for kind in kinds:
    own = [r for r in rows if r['flow'] == kind]
    mean = lambda key, own=own: float(np.mean([r[key] for r in own]))
    lines.append(
        f'| {kind} | ' + ' | '.join(f'{nll[kind, d]:.3f}' for d in datasets)
        + f' | {mean("train_seconds"):.1f} | {mean("sample_seconds"):.3f} | '
        f'{mean("log_prob_seconds"):.3f} | {own[0]["parameters"]:,} |')
  return '\n'.join(lines) + '\n'


def markdown_table(rows, seed):
  lines = [
      '# Flows on 2-D toy densities',
      '',
      f'Each flow trained as `train.py --flow=K --dataset=D` trains it (steps, '
      f'batch, learning rate and decay in every row), seed {seed}. Test NLL '
      f'over the {NUM_SAMPLES:,} test points; the gap to the true density is '
      'the test NLL minus that of the exact mixture (8gaussians only). Times: '
      'wall clock; train is the whole training run, tracing included; sample '
      f'and log_prob are medians of {TIMED_CALLS} calls on {NUM_SAMPLES:,} '
      'points after a tracing call.',
      '',
      'Test NLL (nats) by flow and dataset; times and parameters are means '
      'over the datasets:',
      '',
      summary_table(rows),
      'Every row:',
      '',
      '| ' + ' | '.join(title for _, title, _ in _COLUMNS) + ' |',
      '|' + '---|' * len(_COLUMNS),
  ]
  for row in rows:
    cells = [form.format(row[key]) if key in row else ''
             for key, _, form in _COLUMNS]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot_densities(densities, kinds, datasets, path):
  """Grid of heat-maps: a row per dataset, a column per flow after the data."""
  fig, axes = plt.subplots(
      len(datasets), len(kinds) + 1, squeeze=False,
      figsize=(2 * (len(kinds) + 1), 2 * len(datasets)))
  extent = (-EXTENT, EXTENT) * 2
  for row, dataset in zip(axes, datasets):
    points = data.sample_toy(
        dataset, *data.TOY_SPLITS['train'])
    histogram, _, _ = np.histogram2d(
        points[:, 1], points[:, 0], bins=RESOLUTION, range=[(-EXTENT, EXTENT)] * 2)
    row[0].imshow(histogram, origin='lower', extent=extent, cmap='viridis')
    row[0].set_ylabel(dataset)
    for axis, kind in zip(row[1:], kinds):
      axis.imshow(densities[kind, dataset], origin='lower', extent=extent,
                  cmap='viridis')
  for axis, title in zip(axes[0], ['data'] + list(kinds)):
    axis.set_title(title)
  for axis in axes.flat:
    axis.set_xticks([])
    axis.set_yticks([])
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def compare(kinds, datasets, out_dir, seed, dimension_kinds=(),
            dimensions=(), **overrides):
  """Trains every flow on every dataset; writes the tables, JSON and figure.

  `overrides` are `tf_realnvp.config.Config` fields that replace train.py's
  defaults for every run (e.g. `train_steps`, `batch_size`). The runs'
  model directories go to `out_dir/runs`.

  Returns:
    The table rows, one dict per flow and dataset, and the timing rows, one
    per flow of `dimension_kinds` and size of `dimensions`.
  """
  unknown = ([k for k in list(kinds) + list(dimension_kinds)
              if k not in flows.FLOWS]
             + [d for d in datasets if d not in data.TOY_DATASETS])
  if unknown:
    raise ValueError(f'Unknown flows or datasets: {unknown}.')
  rows, densities = [], {}
  for dataset in datasets:
    for kind in kinds:
      row, densities[kind, dataset] = compare_one(
          kind, dataset, os.path.join(out_dir, 'runs'), seed, **overrides)
      rows.append(row)
  by_dimension = [time_by_dimension(kind, int(dims), seed)
                  for kind in dimension_kinds for dims in dimensions]
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'compare_flows.json'), 'w') as f:
    json.dump(dict(settings=dict(seed=seed, **overrides), rows=rows,
                   by_dimension=by_dimension), f, indent=2)
  with open(os.path.join(out_dir, 'compare_flows.md'), 'w') as f:
    f.write(markdown_table(rows, seed))
    if by_dimension:
      f.write(dimension_table(by_dimension))
  plot_densities(densities, kinds, datasets,
                 os.path.join(out_dir, 'densities.png'))
  return rows, by_dimension


def main(argv):
  del argv
  overrides = {name: value for name, value in (
      ('train_steps', FLAGS.steps), ('batch_size', FLAGS.batch_size))
               if value is not None}
  compare(FLAGS.flows, FLAGS.datasets, FLAGS.out_dir, FLAGS.seed,
          FLAGS.dimension_flows, FLAGS.dimensions, **overrides)
  print(open(os.path.join(FLAGS.out_dir, 'compare_flows.md')).read())


if __name__ == '__main__':
  app.run(main)
