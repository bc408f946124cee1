"""Training loop: distribution strategy, compiled step, checkpoints, summaries.

`train_and_evaluate(config)` trains `RealNVP` (or on 2-D data another flow of
`tf_realnvp.flows`, `config.flow`) by maximum likelihood (Dinh et al. 2017,
Sec. 4.1): Adam on the negative log-likelihood per dimension plus
`config.l2 * weight_scale_l2(flow)`, with the learning-rate warmup and decay
and the Polyak averaging of `optimizers.make_optimizer`; evaluation, samples
and the export use the averaged weights when there are any. Re-running it with
the same `model_dir` resumes from the latest checkpoint, which holds the
weights, the optimizer state (with the averages), the step counters and the
position in the data stream; all randomness is derived from `config.seed` by
stateless ops, so a resumed run ends with the same weights as an
uninterrupted one.
"""

import contextlib
import json
import math
import os
import shutil
import signal
import tempfile
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from tf_realnvp import config as config_lib
from tf_realnvp import flows
from tf_realnvp import input_pipeline
from tf_realnvp import mode
from tf_realnvp import optimizers
from tf_realnvp import plots
from tf_realnvp.bijectors.actnorm import ActNorm
from tf_realnvp.distribution import RealNVP
from tf_realnvp.distribution import weight_scale_l2
from tf_realnvp.distribution import with_temperature

SUM = tf.distribute.ReduceOp.SUM
TOY_TRAIN_STEPS = 6000
TOY_EVAL_EVERY = 1000
GRID_SAMPLES = 36


class TrainingDivergedError(RuntimeError):
  """Raised when too many consecutive steps had a non-finite loss or gradient."""


def is_image_dataset(name):
  return name in input_pipeline.IMAGE_DATASETS


def build_flow(config):
  """The distribution that `config` describes.

  Images: `RealNVP` (multi-scale), with additive couplings for `nice` and
  Glow steps for `glow`. 2-D data: `tf_realnvp.make_flow(config.flow)`.
  Run-time argument checks are off: XLA drops them anyway, and a batch with a
  NaN must reach the step to be skipped and counted, not stop the run. Batches
  are checked statically against the flow by `check_batches`.
  """
  event_shape = input_pipeline.event_shape(config.dataset, config.image_size)
  network_dtype = 'mixed_bfloat16' if config.mixed_precision else None
  batch_norm_couplings = config.batch_norm in ('couplings', 'both')
  if is_image_dataset(config.dataset):
    return RealNVP(
        event_shape,
        num_scales=config.num_scales,
        num_res_blocks=config.num_res_blocks,
        num_filters=config.num_filters,
        batch_norm_couplings=batch_norm_couplings,
        conditioner_options=dict(
            batch_norm=config.batch_norm in ('networks', 'both')),
        network_dtype=network_dtype,
        validate_args=False,
        **flows.COUPLING_FLOWS[config.flow])
  settings = dict(hidden_units=tuple(config.hidden_units))
  if config.flow != 'ffjord':
    settings.update(num_layers=config.num_coupling_layers)
  if config.flow in flows.COUPLING_FLOWS:
    settings.update(network_dtype=network_dtype, validate_args=False,
                    batch_norm_couplings=batch_norm_couplings)
  return flows.make_flow(config.flow, event_shape, **settings)


def initialize_actnorms(flow, dataset):
  """Initializes Glow's `ActNorm` layers on `dataset`'s first batch, if needed.

  `ActNorm` sets its statistics on the first batch it sees. Inside a
  distributed step each replica would see only its share, and a mirrored
  variable cannot be assigned per replica; so one `log_prob` on a whole
  global batch, in cross-replica context, sets every replica alike. Every
  worker passes the same (unsharded) dataset. Restored layers are skipped, and
  a flow without ActNorm reads no batch.
  """
  # `read_value`: the truth value of a mirrored variable itself is always True.
  if any(isinstance(layer, ActNorm) and not layer.initialized.read_value()
         for layer in flow.submodules):
    flow.log_prob(next(iter(dataset)))


def check_batches(dataset, flow):
  """Raises if `dataset`'s batches cannot be events of `flow`."""
  spec = dataset.element_spec
  expected = tf.TensorShape([None]).concatenate(flow.event_shape)
  if spec.dtype != flow.dtype or not expected.is_compatible_with(spec.shape):
    raise ValueError(
        f'The input pipeline yields {spec.dtype.name} batches of shape '
        f'{spec.shape}; the flow needs {flow.dtype.name} batches of shape '
        f'{expected}.')


STRATEGIES = ('auto', 'one_device', 'mirrored', 'multi_worker')


def cluster_from_env():
  """The `TF_CONFIG` cluster spec, or None when it names no multi-task cluster."""
  cluster = json.loads(os.environ.get('TF_CONFIG') or '{}').get('cluster', {})
  return cluster if sum(len(tasks) for tasks in cluster.values()) > 1 else None


def make_strategy(name, devices=None):
  """Returns the distribution strategy `name`.

  `auto` picks `multi_worker` (`MultiWorkerMirroredStrategy`, configured by
  `TF_CONFIG`) when `TF_CONFIG` names a cluster, otherwise `mirrored` over all
  GPUs, or `one_device` on the CPU when there is no GPU. Call it before any
  other TensorFlow work: a multi-worker strategy must configure the runtime.
  """
  if name not in STRATEGIES:
    raise ValueError(f'strategy must be one of {STRATEGIES}, got {name!r}.')
  if name == 'auto' and cluster_from_env():
    name = 'multi_worker'
  if name == 'multi_worker':
    if not cluster_from_env():
      raise ValueError('--strategy=multi_worker needs TF_CONFIG naming a '
                       'cluster of several tasks (see README).')
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices('GPU')
  if name == 'auto':
    name = 'mirrored' if gpus else 'one_device'
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.OneDeviceStrategy(
      (devices or [gpus[0].name if gpus else '/cpu:0'])[0])


def is_chief(strategy):
  """Whether this task writes the run's files (always, on one machine)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or resolver.task_type is None:
    return True
  return (resolver.task_type == 'chief' or
          (resolver.task_type == 'worker' and resolver.task_id == 0 and
           'chief' not in resolver.cluster_spec().as_dict()))


def worker_shard(dataset, strategy):
  """This worker's part of each global batch (the whole batch on one machine).

  Every worker reads the same stream of global batches and keeps every
  `num_workers`-th example of each, so the workers' parts of a batch together
  are exactly the batch one machine would train on.
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  workers = (strategy.num_replicas_in_sync //
             len(strategy.extended.worker_devices))
  if resolver is None or workers == 1:
    return dataset
  global_batch = dataset.element_spec.shape[0]
  return dataset.unbatch().shard(workers, resolver.task_id).batch(
      global_batch // workers, drop_remainder=True)


def model_dir_of(config):
  return config.model_dir or os.path.join('runs', config.dataset)


def mean_nll_to_metric(mean_nll, event_shape, dataset):
  """Bits/dim for images, nats for vectors: the figure each field reports."""
  if is_image_dataset(dataset):
    return mean_nll / (math.prod(event_shape) * math.log(2.))
  return mean_nll


def metric_name(dataset):
  return 'bits_per_dim' if is_image_dataset(dataset) else 'nll_nats'


class Evaluator:
  """Mean negative log-likelihood of `flow` over a dataset, under `strategy`."""

  def __init__(self, flow, strategy):
    self.flow = flow
    self.strategy = strategy
    self._step = tf.function(self._sum_and_count)

  def _sum_and_count(self, batch):
    def replica_fn(x):
      return (-tf.reduce_sum(self.flow.log_prob(x)),
              tf.cast(tf.shape(x)[0], self.flow.dtype))
    nll_sum, count = self.strategy.run(replica_fn, (batch,))
    return (self.strategy.reduce(SUM, nll_sum, axis=None),
            self.strategy.reduce(SUM, count, axis=None))

  def mean_nll(self, dataset):
    """Mean NLL in nats over a finite `dataset` of (unbatched-by-strategy) batches."""
    total, count = 0., 0.
    for batch in self.strategy.experimental_distribute_dataset(dataset):
      nll_sum, n = self._step(batch)
      total += float(nll_sum)
      count += float(n)
    if not count:
      raise ValueError('The evaluation dataset is empty.')
    return total / count


class Steps:
  """The compiled train and eval steps of `flow` under `strategy`.

  The per-replica gradient is XLA-compiled when `jit`; the cross-replica sum,
  the finiteness check, clipping and the update stay outside, where
  distribution works with every strategy. A step whose loss or gradient is
  not finite leaves the weights and the optimizer untouched and is counted in
  `bad_steps` (XLA drops `tf.debugging` asserts, so the check is arithmetic).
  """

  def __init__(self, flow, optimizer, strategy, global_batch_size, l2,
               clip_norm, jit):
    self.flow = flow
    self.optimizer = optimizer
    self.strategy = strategy
    self.global_batch_size = global_batch_size
    self.l2 = l2
    self.clip_norm = clip_norm
    self.variables = flow.trainable_variables
    if global_batch_size % strategy.num_replicas_in_sync:
      raise ValueError(
          f'--batch_size={global_batch_size} must be divisible by the '
          f'{strategy.num_replicas_in_sync} replicas.')
    self.bad_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                 name='bad_steps')
    self._replica_gradients = tf.function(self._gradients, jit_compile=jit)
    self.train_step = tf.function(self._train_step)

  def _gradients(self, x):
    """Per-replica NLL sum and gradients of this replica's share of the loss.

    The forward pass runs in training mode (`tf_realnvp.mode`): batch
    normalization uses and updates the batch's statistics.
    """
    dims = self.flow.event_shape.num_elements()
    replicas = self.strategy.num_replicas_in_sync
    with tf.GradientTape() as tape:
      with mode.training():
        nll_sum = -tf.reduce_sum(self.flow.log_prob(x))
      loss = (nll_sum / (self.global_batch_size * dims)
              + self.l2 * weight_scale_l2(self.flow) / replicas)
    return nll_sum, tape.gradient(loss, self.variables)

  def _split(self, batch):
    """Gives each local replica its contiguous share of this worker's batch."""
    share = self.global_batch_size // self.strategy.num_replicas_in_sync
    local_replicas = len(self.strategy.extended.worker_devices)

    def replica_share(context):
      start = context.replica_id_in_sync_group % local_replicas * share
      return batch[start:start + share]
    return self.strategy.experimental_distribute_values_from_function(
        replica_share)

  def _train_step(self, iterator):
    """One step on the next batch; returns the mean NLL and whether it applied.

    `iterator` is a plain `tf.data` iterator of global batches: unlike a
    distributed iterator it can be checkpointed, so the data stream resumes
    where it stopped.
    """
    nll_sum, grads = self.strategy.run(
        self._replica_gradients, (self._split(next(iterator)),))
    mean_nll = self.strategy.reduce(SUM, nll_sum, axis=None) / (
        self.global_batch_size)
    grads = self.strategy.extended.batch_reduce_to(
        SUM, list(zip(grads, self.variables)))
    finite = tf.math.is_finite(mean_nll)
    for grad in grads:
      finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(grad)))

    def apply():
      clipped, _ = tf.clip_by_global_norm(grads, self.clip_norm)
      self.optimizer.apply_gradients(zip(clipped, self.variables))
      return tf.constant(True)

    def skip():
      self.bad_steps.assign_add(1)
      return tf.constant(False)

    return mean_nll, tf.cond(finite, apply, skip)


class _TerminateAsInterrupt:
  """Turns SIGTERM into KeyboardInterrupt while active, so `kill` saves too."""

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._raise)
    return self

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)

  @staticmethod
  def _raise(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


def restore_flow(model_dir, averaged=True):
  """Rebuilds the flow of the run in `model_dir` from its latest checkpoint.

  A run with `ema_decay > 0` saves the optimizer's averages of the trainable
  variables a second time under `averages/i` (i: the index in
  `flow.trainable_variables`, the list the optimizer was built on). With
  `averaged`, those are then read into the trainable variables, so the flow
  has the weights the run evaluated, sampled and exported with; the other
  variables (such as `ActNorm`'s initialization flag) are the checkpoint's.

  Returns:
    `(config, flow, step)`.
  """
  config = config_lib.Config.load(model_dir)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, 'checkpoints'))
  if latest is None:
    raise FileNotFoundError(f'No checkpoint in {model_dir}/checkpoints.')
  flow = build_flow(config)
  step = tf.Variable(0, dtype=tf.int64, name='step')
  status = tf.train.Checkpoint(flow=flow, step=step).restore(latest)
  status.assert_existing_objects_matched().expect_partial()
  if averaged and config.ema_decay:
    status = tf.train.Checkpoint(
        averages=list(flow.trainable_variables)).restore(latest)
    status.assert_existing_objects_matched().expect_partial()
  return config, flow, int(step.numpy())


def total_steps(config):
  if config.train_steps is not None:
    return config.train_steps
  if config.epochs is not None:
    return math.ceil(config.epochs * steps_per_epoch(config))
  if is_image_dataset(config.dataset):
    raise ValueError('Set --train_steps or --epochs for image datasets.')
  return TOY_TRAIN_STEPS


def steps_per_epoch(config):
  examples = input_pipeline.num_examples(
      config.dataset, 'train', data_dir=config.data_dir,
      download=config.download)
  return max(1, examples // config.batch_size)


def eval_interval(config):
  if config.eval_every is not None:
    return config.eval_every
  if is_image_dataset(config.dataset):
    return steps_per_epoch(config)
  return TOY_EVAL_EVERY


def train_and_evaluate(config, devices=None):
  """Trains (or resumes) the run `config` describes; returns final metrics.

  On several machines (`TF_CONFIG`, `MultiWorkerMirroredStrategy`) every
  worker runs this; only the chief writes checkpoints, summaries, samples and
  the export into `model_dir`, the others write into temporary directories
  that are removed at the end. A SIGTERM to any worker makes all of them save
  a checkpoint at the same step and exit (TF's `PreemptionCheckpointHandler`);
  on one machine SIGTERM and Ctrl-C save a checkpoint before stopping.

  Args:
    config: a `tf_realnvp.config.Config`.
    devices: optional device names for the strategy (tests use logical CPUs).

  Returns:
    Dict with `step`, `bad_steps`, the test metric and `model_dir`.
  """
  strategy = make_strategy(config.strategy, devices)  # First: may set up TF.
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  model_dir = model_dir_of(config)
  config.model_dir = model_dir
  chief = is_chief(strategy)
  write_dir = model_dir if chief else tempfile.mkdtemp(prefix='tf_realnvp_')
  if os.path.exists(os.path.join(model_dir, 'config.json')):
    config.check_resumable_from(config_lib.Config.load(model_dir))
  try:
    return _train(config, strategy, model_dir, write_dir)
  finally:
    if not chief:
      shutil.rmtree(write_dir, ignore_errors=True)


def _train(config, strategy, model_dir, write_dir):
  """The training loop of `train_and_evaluate`; this task writes to `write_dir`."""
  jit = config.jit if config.jit is not None else bool(
      tf.config.list_logical_devices('GPU'))
  num_steps = total_steps(config)
  every_eval = eval_interval(config)
  all_train_data = input_pipeline.make_dataset(
      config.dataset, 'train', config.batch_size, seed=config.seed,
      data_dir=config.data_dir, image_size=config.image_size,
      download=config.download,
      random_flip=config.random_flip and is_image_dataset(config.dataset))
  train_data = worker_shard(all_train_data, strategy)
  test_data = input_pipeline.make_dataset(
      config.dataset, 'test', config.batch_size, seed=config.seed,
      data_dir=config.data_dir, image_size=config.image_size,
      download=config.download, shuffle=False, repeat=False,
      drop_remainder=False)
  if config.eval_batches:
    test_data = test_data.take(config.eval_batches)

  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    flow = build_flow(config)
    optimizer = optimizers.make_optimizer(
        config.learning_rate, warmup_steps=config.warmup_steps,
        lr_decay=config.lr_decay, total_steps=num_steps,
        lr_decay_floor=config.lr_decay_floor, ema_decay=config.ema_decay)
    optimizer.build(flow.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    steps = Steps(flow, optimizer, strategy, config.batch_size, config.l2,
                  config.clip_norm, jit)
  check_batches(train_data, flow)
  check_batches(test_data, flow)
  iterator = iter(train_data)
  evaluator = Evaluator(flow, strategy)

  # The averages are also the optimizer's variables; saved under their own
  # name too, `restore_flow` can read them without rebuilding the optimizer.
  averages = optimizers.moving_averages(optimizer)
  checkpoint = tf.train.Checkpoint(
      flow=flow, optimizer=optimizer, step=step, bad_steps=steps.bad_steps,
      data=iterator, **({'averages': averages} if averages else {}))
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, 'checkpoints'))
  if latest:
    checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info('Resumed from %s at step %d.', latest, int(step.numpy()))
  initialize_actnorms(flow, all_train_data)
  optimizers.start_averages(optimizer, steps.variables)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(write_dir, 'checkpoints'),
      max_to_keep=config.keep_checkpoints)
  config.save(write_dir)
  last_saved = {'step': int(step.numpy()) if latest else None}

  def save():
    if last_saved['step'] != int(step.numpy()):
      manager.save(checkpoint_number=int(step.numpy()))
      last_saved['step'] = int(step.numpy())

  def train_step():
    outputs = steps.train_step(iterator)
    step.assign_add(1)
    return outputs

  multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
  if multi_worker:
    preemption = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, manager)
    run_step = lambda: preemption.run(train_step)
  else:
    run_step = train_step

  writers = {split: tf.summary.create_file_writer(os.path.join(write_dir, split))
             for split in ('train', 'test')}
  name = metric_name(config.dataset)
  event_shape = tuple(flow.event_shape)
  progress = keras.utils.Progbar(
      num_steps, interval=2., verbose=1 if write_dir == model_dir else 0,
      stateful_metrics=['loss', name, 'examples/s', 'skipped'])
  progress.update(int(step.numpy()))
  consecutive_bad = 0
  result = {}
  with contextlib.nullcontext() if multi_worker else _TerminateAsInterrupt():
    try:
      while int(step.numpy()) < num_steps:
        upcoming = int(step.numpy()) + 1
        log_now = upcoming % config.log_every == 0 or upcoming == num_steps
        # The rate of this step's update: the schedule is a function of the
        # updates applied before it.
        learning_rate = (float(optimizer.learning_rate.numpy()) if log_now
                         else None)
        start = time.perf_counter()
        mean_nll, applied = run_step()
        mean_nll = float(mean_nll)
        seconds = time.perf_counter() - start
        consecutive_bad = 0 if bool(applied) else consecutive_bad + 1
        if consecutive_bad >= config.max_bad_steps:
          save()
          raise TrainingDivergedError(
              f'{consecutive_bad} consecutive steps had a non-finite loss or '
              f'gradient (last loss {mean_nll}); stopped at step {int(step.numpy())}. '
              'Lower --learning_rate or --clip_norm, or check the data.')
        current = int(step.numpy())
        metric = mean_nll_to_metric(mean_nll, event_shape, config.dataset)
        progress.update(current, [
            ('loss', mean_nll), (name, metric),
            ('examples/s', config.batch_size / seconds),
            ('skipped', int(steps.bad_steps.numpy()))])
        if log_now:
          with writers['train'].as_default(step=current):
            tf.summary.scalar(name, metric)
            tf.summary.scalar('learning_rate', learning_rate)
            tf.summary.scalar('skipped_steps', steps.bad_steps)
            tf.summary.scalar('examples_per_second', config.batch_size / seconds)
        if current % config.checkpoint_every == 0:
          save()
        if current % every_eval == 0 or current == num_steps:
          with optimizers.averaged_weights(optimizer, steps.variables):
            test_metric = mean_nll_to_metric(
                evaluator.mean_nll(test_data), event_shape, config.dataset)
            with writers['test'].as_default(step=current):
              tf.summary.scalar(name, test_metric)
            logging.info('step %d: test %s %.4f', current, name, test_metric)
            result = {'step': current, f'test_{name}': test_metric}
            write_samples(flow, config, write_dir, current, writers['test'])
    except KeyboardInterrupt:
      if not multi_worker:  # Saving there needs every worker.
        save()
        logging.info('Interrupted at step %d; checkpoint saved, re-run to '
                     'resume.', int(step.numpy()))
      raise
  save()
  if config.export:
    from tf_realnvp import export  # pylint: disable=g-import-not-at-top
    with optimizers.averaged_weights(optimizer, steps.variables):
      export.export_saved_model(flow, os.path.join(write_dir, 'saved_model'))
  result.update(step=int(step.numpy()), bad_steps=int(steps.bad_steps.numpy()),
                model_dir=model_dir)
  return result


def sample_seed(seed, step):
  """The stateless seed of the samples drawn at `step`."""
  return tf.constant([seed, step], tf.int32)


def write_samples(flow, config, model_dir, step, writer, temperature=1.):
  """Writes `samples/step_N.png`: a 6x6 grid, or a 2-D density plot.

  Samples come from the base Normal scaled by `temperature`; a temperature
  other than 1 is added to the file name (`step_N_t0.7.png`).
  """
  suffix = '' if temperature == 1 else f'_t{temperature:g}'
  path = os.path.join(model_dir, 'samples', f'step_{step}{suffix}.png')
  seed = sample_seed(config.seed, step)
  sampler = with_temperature(flow, temperature)
  if is_image_dataset(config.dataset):
    grid = plots.image_grid(sampler.sample(GRID_SAMPLES, seed=seed).numpy())
    plots.save_png(grid, path)
    with writer.as_default(step=step):
      tf.summary.image('samples', grid[None].astype(np.float32) / 255.)
  else:
    data = input_pipeline.sample_toy(config.dataset, 2000, config.seed + 1)
    plots.density_plot(
        lambda points: flow.log_prob(points), sampler.sample(2000, seed=seed),
        path, data=data, title=f'{config.dataset}, step {step}')
  return path
