"""Evaluation of a flow: its test figure, the run it was trained in, its samples.

The trainer evaluates with `Evaluator` and writes samples with
`write_samples` as it goes; `evaluate(model_dir)` (`evaluate.py`) does both
for a finished run, rebuilt from its latest checkpoint by `restore_flow`.
"""

import functools
import json
import os

import numpy as np
import tensorflow as tf

from tf_realnvp import data as data_lib
from tf_realnvp import distribution
from tf_realnvp import experiment as experiment_lib
from tf_realnvp import model_dir as model_dir_lib
from tf_realnvp import objective
from tf_realnvp import plots

SUM = tf.distribute.ReduceOp.SUM
GRID_SAMPLES = 36
DENSITY_SAMPLES = 2000


class Evaluator:
  """Mean negative log-likelihood of `flow` over a dataset, under `strategy`."""

  def __init__(self, flow, strategy):
    self.flow = flow
    self.strategy = strategy
    self._step = tf.function(self._sum_and_count)

  def _sum_and_count(self, batch):
    def replica_fn(batch):
      x, context = objective.split(batch)
      return (-tf.reduce_sum(distribution.log_prob(self.flow, x, context)),
              tf.cast(tf.shape(x)[0], self.flow.dtype))
    nll_sum, count = self.strategy.run(replica_fn, (batch,))
    return (self.strategy.reduce(SUM, nll_sum, axis=None),
            self.strategy.reduce(SUM, count, axis=None))

  def mean_nll(self, dataset):
    """Mean NLL in nats over a finite `dataset` of (unbatched-by-strategy)
    batches: events, or `(events, context)` for a conditional flow."""
    total, count = 0., 0.
    for batch in self.strategy.experimental_distribute_dataset(dataset):
      nll_sum, n = self._step(batch)
      total += float(nll_sum)
      count += float(n)
    if not count:
      raise ValueError('The evaluation dataset is empty.')
    return total / count


def restore_flow(model_dir, averaged=True):
  """Rebuilds the flow of the run in `model_dir` from its latest checkpoint.

  The newest checkpoint that reads back is used (see `model_dir`). A run
  with `ema_decay > 0` saves the optimizer's averages of the trainable
  variables a second time under `averages/i` (i: the index in
  `flow.trainable_variables`, the list the optimizer was built on). With
  `averaged`, those are then read into the trainable variables, so the flow
  has the weights the run evaluated, sampled and exported with; the other
  variables (such as `ActNorm`'s initialization flag) are the checkpoint's.

  Returns:
    `(experiment, flow, step)`.
  """
  experiment = experiment_lib.load(model_dir)
  flow = experiment.build_flow()
  step = tf.Variable(0, dtype=tf.int64, name='step')
  checkpoint = tf.train.Checkpoint(flow=flow, step=step)
  # The rest of the checkpoint is the optimizer's.
  latest = model_dir_lib.restore_newest_intact(
      checkpoint, os.path.join(model_dir, 'checkpoints'), tidy=False,
      partial=True)
  if latest is None:
    raise FileNotFoundError(f'No checkpoint in {model_dir}/checkpoints.')
  if averaged and experiment.config.ema_decay:
    status = tf.train.Checkpoint(
        averages=list(flow.trainable_variables)).restore(latest)
    status.assert_existing_objects_matched().expect_partial()
  return experiment, flow, int(step.numpy())


def sample_seed(seed, step):
  """The stateless seed of the samples drawn at `step`."""
  return tf.constant([seed, step], tf.int32)


def write_samples(flow, experiment, model_dir, step, writer, temperature=1.):
  """Writes `samples/step_N.png`: a 6x6 grid, or a 2-D density plot.

  A class-conditional run draws a row of 6 samples per class (2-D data:
  samples of every class in the class's colour, over the marginal density).

  Samples come from the base Normal scaled by `temperature`; a temperature
  other than 1 is added to the file name (`step_N_t0.7.png`).
  """
  config = experiment.config
  suffix = '' if temperature == 1 else f'_t{temperature:g}'
  path = os.path.join(model_dir, 'samples', f'step_{step}{suffix}.png')
  seed = sample_seed(config.seed, step)
  sampler = distribution.with_temperature(flow, temperature)
  num_classes = experiment.data.num_classes if config.conditional else None
  count = GRID_SAMPLES if experiment.data.is_image else DENSITY_SAMPLES
  if num_classes:  # A row of samples per class; 2-D: a colour per class.
    columns = GRID_SAMPLES // 6 if experiment.data.is_image else (
        -(-DENSITY_SAMPLES // num_classes))
    classes = np.repeat(np.arange(num_classes, dtype=np.int32), columns)
    samples = distribution.sample(sampler, len(classes), seed, classes)
  else:
    classes = None
    samples = sampler.sample(count, seed=seed)
  if experiment.data.is_image:
    grid = plots.image_grid(samples.numpy(), rows=num_classes or 6)
    plots.save_png(grid, path)
    with writer.as_default(step=step):
      tf.summary.image('samples', grid[None].astype(np.float32) / 255.)
  else:
    data = data_lib.sample_toy(config.dataset, 2000, config.seed + 1)
    plots.density_plot(
        functools.partial(marginal_log_prob, flow, num_classes), samples,
        path, data=data, title=f'{config.dataset}, step {step}',
        classes=classes)
  return path


def marginal_log_prob(flow, num_classes, x):
  """`log p(x)`; for a class-conditional flow the marginal over equally
  likely classes, `logsumexp_k log p(x | k) - log K`."""
  if not num_classes:
    return flow.log_prob(x)
  per_class = tf.stack([distribution.log_prob(flow, x, tf.constant(k))
                        for k in range(num_classes)])
  return tf.reduce_logsumexp(per_class, axis=0) - np.log(num_classes)


def evaluate(model_dir, num_dequantizations=1, temperature=1.0,
             eval_batches=None, export=False):
  """Evaluates the latest checkpoint in `model_dir`; returns the eval.json dict.

  The test figure (bits/dim averaged over `num_dequantizations` noise draws
  for images, NLL in nats for 2-D data) goes to `model_dir/eval.json` and to
  TensorBoard (`model_dir/eval`), with the samples at `temperature`.
  """
  if not temperature > 0:
    raise experiment_lib.ConfigError(
        f'--temperature must be positive, got {temperature}.')
  if num_dequantizations < 1:
    raise experiment_lib.ConfigError(
        f'--num_dequantizations must be at least 1, got {num_dequantizations}.')
  experiment, flow, step = restore_flow(model_dir)
  evaluator = Evaluator(flow, tf.distribute.get_strategy())
  data = experiment.data
  draws = num_dequantizations if data.is_image else 1
  figures = []
  for draw in range(draws):
    test_data = experiment.dataset('test', seed_offset=draw)
    if eval_batches:
      test_data = test_data.take(eval_batches)
    figures.append(data.metric(evaluator.mean_nll(test_data)))
  result = {'step': step, f'test_{data.metric_name}': sum(figures) / draws,
            'num_dequantizations': draws, 'temperature': temperature}
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
  with writer.as_default(step=step):
    tf.summary.scalar(data.metric_name, result[f'test_{data.metric_name}'])
  result['samples'] = write_samples(
      flow, experiment, model_dir, step, writer, temperature=temperature)
  if export:
    from tf_realnvp import export as export_lib  # pylint: disable=g-import-not-at-top
    result['saved_model'] = export_lib.export_saved_model(
        flow, os.path.join(model_dir, 'saved_model'))
  with open(os.path.join(model_dir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  return result
