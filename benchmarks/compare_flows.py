r"""RealNVP against NICE, MAF, IAF, Glow and FFJORD on the 2-D toy densities.

    python -m benchmarks.compare_flows --out_dir=compare_flows_results

Every flow of `--flows` (`tf_realnvp.flows`, in its default size) is trained
on every dataset of `--datasets` (the 2-D toys of `tf_realnvp.input_pipeline`)
with the same budget: `--steps` Adam steps (learning rate `LEARNING_RATE`) on
the negative log-likelihood of minibatches of `--batch_size` points drawn at
random from the training split, from the same `--seed`. Then it measures

- test NLL in nats, `-mean log p(x)` over the 10,000 test points; for
  8gaussians also the gap to the true density, the test NLL minus
  `-mean log p*(x)` of the exact mixture (the entropy estimate, a lower bound
  of any model's NLL up to sampling noise);
- train time: wall clock of the whole loop, tracing included;
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
import tensorflow_probability as tfp

from tf_realnvp import flows
from tf_realnvp import input_pipeline

FLAGS = flags.FLAGS
flags.DEFINE_list('flows', list(flows.FLOWS),
                  f'Flows to train, from {list(flows.FLOWS)}.')
flags.DEFINE_list('datasets', list(input_pipeline.TOY_DATASETS),
                  f'2-D datasets, from {list(input_pipeline.TOY_DATASETS)}.')
flags.DEFINE_integer('steps', 2000, 'Adam steps per flow and dataset.')
flags.DEFINE_integer('batch_size', 256, 'Points per training minibatch.')
flags.DEFINE_string('out_dir', 'compare_flows_results',
                    'Where to write the table, its JSON and the figure.')
flags.DEFINE_integer('seed', 0, 'Seed of the initial weights, the minibatches '
                     'and the samples.')
flags.DEFINE_list('dimension_flows', ['realnvp', 'maf', 'iaf'],
                  'Flows whose sampling and log_prob times are also measured '
                  'on vectors of --dimensions entries (untrained).')
flags.DEFINE_list('dimensions', ['2', '8', '32'],
                  'Event sizes D of the timing by dimension.')

LEARNING_RATE = 1e-3
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
    ('train_seconds', 'train (s)', '{:.1f}'),
    ('sample_seconds', 'sample 10k (s)', '{:.3f}'),
    ('log_prob_seconds', 'log_prob 10k (s)', '{:.3f}'),
    ('parameters', 'parameters', '{:,}'),
)


def train(flow, points, steps, batch_size, seed):
  """Adam on the NLL of random minibatches of `points`; returns the last NLL."""
  points = tf.constant(points)
  flow.log_prob(points[:batch_size])  # Data-dependent init (Glow's ActNorm).

  def minibatch_nll(seed):
    indices = tf.random.stateless_uniform(
        [batch_size], seed, minval=0, maxval=points.shape[0], dtype=tf.int32)
    return -tf.reduce_mean(flow.log_prob(tf.gather(points, indices)))

  losses = tfp.math.minimize(
      minibatch_nll, num_steps=steps,
      optimizer=tf.optimizers.Adam(LEARNING_RATE),
      trainable_variables=flow.trainable_variables, seed=seed)
  return float(losses[-1])


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


def compare_one(kind, dataset, steps, batch_size, seed):
  """Trains one flow on one dataset; returns its table row and density grid."""
  keras.utils.set_random_seed(seed)
  flow = flows.make_flow(kind)
  train_points = input_pipeline.sample_toy(
      dataset, *input_pipeline.TOY_SPLITS['train'])
  test_points = tf.constant(input_pipeline.sample_toy(
      dataset, *input_pipeline.TOY_SPLITS['test']))
  start = time.perf_counter()
  last_nll = train(flow, train_points, steps, batch_size, seed)
  train_seconds = time.perf_counter() - start
  log_prob = tf.function(flow.log_prob)
  test_nll = -float(np.mean(log_prob(test_points)))
  row = dict(
      flow=kind, dataset=dataset, test_nll=test_nll,
      last_train_nll=last_nll, train_seconds=train_seconds,
      **sample_and_log_prob_seconds(flow, log_prob, test_points, seed),
      parameters=sum(int(np.prod(v.shape)) for v in flow.trainable_variables))
  if dataset == '8gaussians':
    row['true_nll'] = -float(np.mean(
        input_pipeline.toy_log_prob_8gaussians(test_points.numpy())))
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


def markdown_table(rows, steps, batch_size, seed):
  lines = [
      '# Flows on 2-D toy densities',
      '',
      f'{steps} Adam steps (learning rate {LEARNING_RATE}) on minibatches of '
      f'{batch_size} points, seed {seed}. Test NLL over the '
      f'{NUM_SAMPLES:,} test points; the gap to the true density is the test '
      'NLL minus that of the exact mixture (8gaussians only). Times: wall '
      'clock; train includes tracing; sample and log_prob are medians of '
      f'{TIMED_CALLS} calls on {NUM_SAMPLES:,} points after a tracing call.',
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
    points = input_pipeline.sample_toy(
        dataset, *input_pipeline.TOY_SPLITS['train'])
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


def compare(kinds, datasets, steps, batch_size, out_dir, seed,
            dimension_kinds=(), dimensions=()):
  """Trains every flow on every dataset; writes the tables, JSON and figure.

  Returns:
    The table rows, one dict per flow and dataset, and the timing rows, one
    per flow of `dimension_kinds` and size of `dimensions`.
  """
  unknown = ([k for k in list(kinds) + list(dimension_kinds)
              if k not in flows.FLOWS]
             + [d for d in datasets if d not in input_pipeline.TOY_DATASETS])
  if unknown:
    raise ValueError(f'Unknown flows or datasets: {unknown}.')
  rows, densities = [], {}
  for dataset in datasets:
    for kind in kinds:
      row, densities[kind, dataset] = compare_one(
          kind, dataset, steps, batch_size, seed)
      rows.append(row)
  by_dimension = [time_by_dimension(kind, int(dims), seed)
                  for kind in dimension_kinds for dims in dimensions]
  os.makedirs(out_dir, exist_ok=True)
  settings = dict(steps=steps, batch_size=batch_size, seed=seed,
                  learning_rate=LEARNING_RATE)
  with open(os.path.join(out_dir, 'compare_flows.json'), 'w') as f:
    json.dump(dict(settings=settings, rows=rows, by_dimension=by_dimension),
              f, indent=2)
  with open(os.path.join(out_dir, 'compare_flows.md'), 'w') as f:
    f.write(markdown_table(rows, steps, batch_size, seed))
    if by_dimension:
      f.write(dimension_table(by_dimension))
  plot_densities(densities, kinds, datasets,
                 os.path.join(out_dir, 'densities.png'))
  return rows, by_dimension


def main(argv):
  del argv
  compare(FLAGS.flows, FLAGS.datasets, FLAGS.steps, FLAGS.batch_size,
          FLAGS.out_dir, FLAGS.seed, FLAGS.dimension_flows, FLAGS.dimensions)
  print(open(os.path.join(FLAGS.out_dir, 'compare_flows.md')).read())


if __name__ == '__main__':
  app.run(main)
