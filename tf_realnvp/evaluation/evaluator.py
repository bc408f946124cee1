"""Evaluation of a flow: its test figure, its run, its samples."""

import json
import math
import os

import tensorflow as tf

from tf_realnvp import flows
from tf_realnvp.config import checks
from tf_realnvp.config import experiment as experiment_lib
from tf_realnvp.config import run_dir
from tf_realnvp.config import settings
from tf_realnvp.evaluation.figures import write_manifold
from tf_realnvp.evaluation.figures import write_samples
from tf_realnvp.flows import objective

SUM = tf.distribute.ReduceOp.SUM


class Evaluator:
  """Mean negative log-likelihood of `flow` over a dataset, under `strategy`."""

  def __init__(self, flow, strategy):
    self.flow = flow
    self.strategy = strategy
    self._step = tf.function(self._sum_and_count, autograph=False)

  def _sum_and_count(self, batches):
    """The summed NLL of the events of `batches`, a tuple of `K` batches of
    the same examples (other dequantization noise), and their count: each
    example's NLL is `-log mean_k p(x_k)`."""
    def replica_fn(batches):
      log_probs = [flows.log_prob(self.flow, *objective.events_and_context(b))
                   for b in batches]
      log_mean = (tf.reduce_logsumexp(tf.stack(log_probs), axis=0)
                  - math.log(len(batches)))
      return (-tf.reduce_sum(log_mean),
              tf.cast(tf.shape(log_mean)[0], self.flow.dtype))
    nll_sum, count = self.strategy.run(replica_fn, (batches,))
    return (self.strategy.reduce(SUM, nll_sum, axis=None),
            self.strategy.reduce(SUM, count, axis=None))

  def mean_nll(self, *datasets):
    """Mean NLL in nats over finite datasets of (unbatched-by-strategy)
    batches: events, or `(events, context)` for a conditional flow.

    One dataset gives the mean of `-log p(x)`. `K` datasets of the same
    examples in the same order, each with its own dequantization noise
    `u_k`, give the mean of `-log mean_k p(x + u_k)`: for images, the
    importance-weighted bound on the discrete likelihood (Burda et al.
    2016), tighter than one draw's (Flow++ reports both); with a learned
    dequantization `p(x + u_k)` is already the ratio `p / q` (see
    `tf_realnvp.bijectors.VariationalDequantization`).
    """
    total, count = 0., 0.
    dataset = tf.data.Dataset.zip(datasets)
    for batches in self.strategy.experimental_distribute_dataset(dataset):
      nll_sum, n = self._step(batches)
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
  latest = run_dir.restore_newest_intact(
      checkpoint, os.path.join(model_dir, 'checkpoints'), tidy=False,
      partial=True)
  if latest is None:
    raise FileNotFoundError(f'No checkpoint in {model_dir}/checkpoints.')
  if averaged and experiment.config.ema_decay:
    status = tf.train.Checkpoint(
        averages=list(flow.trainable_variables)).restore(latest)
    status.assert_existing_objects_matched().expect_partial()
  return experiment, flow, int(step.numpy())


def evaluate(model_dir, num_dequantizations=None, temperature=1.0,
             eval_batches=None, export=False, importance_samples=1):
  """Evaluates the latest checkpoint in `model_dir`; returns the eval.json dict.

  The test figure (bits/dim averaged over `num_dequantizations` noise draws
  for images, by default `importance_samples`, so that the two bounds below
  come from the same draws; NLL in nats for 2-D data) goes to
  `model_dir/eval.json` and to TensorBoard (`model_dir/eval`). For images,
  a bound on the discrete likelihood: uniform dequantization's, or with a
  learned dequantization the variational one (Flow++'s). With
  `importance_samples=K > 1`, images also get the importance-weighted bound
  of `K` draws per image (`test_bits_per_dim_importance_weighted`),
  tighter. Then the samples at `temperature` and, for an unconditional
  image run, the manifold of four test images' latents (`write_manifold`).
  With `export`, `model_dir/saved_model` computes in float32 whatever the
  run trained in (`Experiment.float32_flow`).

  The trainer evaluates with `Evaluator` and writes samples with
  `write_samples` as it goes; `evaluate(model_dir)` (`evaluate.py`) does both
  for a finished run, rebuilt from its latest checkpoint by `restore_flow`,
  and draws the paper's manifold of latents.
  """
  checks.check_evaluation(settings.EvaluationConfig(
      model_dir, num_dequantizations, importance_samples, temperature,
      eval_batches))
  if num_dequantizations is None:
    num_dequantizations = importance_samples
  experiment, flow, step = restore_flow(model_dir)
  evaluator = Evaluator(flow, tf.distribute.get_strategy())

  def test_data(draw):
    dataset = experiment.dataset('test', seed_offset=draw)
    return dataset.take(eval_batches) if eval_batches else dataset

  image = experiment.data.is_image
  draws = num_dequantizations if image else 1
  name = experiment.metric_name
  result = {'step': step, f'test_{name}': sum(
      experiment.metric(evaluator.mean_nll(test_data(draw)))
      for draw in range(draws)) / draws, 'num_dequantizations': draws}
  if image and importance_samples > 1:
    result[f'test_{name}_importance_weighted'] = experiment.metric(
        evaluator.mean_nll(*map(test_data, range(importance_samples))))
    result['importance_samples'] = importance_samples
  result['temperature'] = temperature
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
  with writer.as_default(step=step):
    tf.summary.scalar(name, result[f'test_{name}'])
  result['samples'] = write_samples(
      flow, experiment, model_dir, step, writer, temperature=temperature)
  if experiment.data.is_image and not experiment.config.conditional:
    result['manifold'] = write_manifold(flow, experiment, model_dir, step,
                                        writer)
  if export:
    from tf_realnvp.serving import saved_model  # pylint: disable=g-import-not-at-top
    result['saved_model'] = saved_model.export_saved_model(
        experiment.float32_flow(flow),
        os.path.join(model_dir, 'saved_model'))
  with open(os.path.join(model_dir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  return result
