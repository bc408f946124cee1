"""The training loop: the compiled step, checkpoints, summaries, progress."""

import contextlib
import dataclasses
import io
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

from absl import logging
import keras
import tensorflow as tf

from tf_realnvp import config as config_lib
from tf_realnvp import console
from tf_realnvp import evaluation
from tf_realnvp import flows
from tf_realnvp.bijectors.actnorm import initialize_actnorms
from tf_realnvp.config import checks
from tf_realnvp.config import experiment as experiment_lib
from tf_realnvp.config import hardware
from tf_realnvp.config import run_dir
from tf_realnvp.flows import objective
from tf_realnvp.training import optimizers
from tf_realnvp.training import strategies
from tf_realnvp.training.step import check_batches
from tf_realnvp.training.step import TrainStep


class TrainingDivergedError(RuntimeError):
  """Raised when too many consecutive steps had a non-finite loss or gradient."""


class TrainingInterrupted(RuntimeError):
  """A signal stopped the run; its checkpoint is saved. Exit code 130."""


class _StopOnSignal:
  """While active, SIGINT (Ctrl-C) and SIGTERM ask the loop to stop.

  The handler only records the signal: the loop finishes the step in
  progress, saves a checkpoint at that step boundary (weights, optimizer,
  step counter and data position all of one step) and stops. A second
  signal stops at once, without saving (the previous checkpoint stays).
  Signal handlers can only be installed from the main thread; elsewhere the
  signals keep their handlers.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._record) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _record(self, signum, frame):
    del frame
    if self.received is not None:
      raise KeyboardInterrupt(f'second signal {signal.Signals(signum).name}')
    self.received = signal.Signals(signum).name


def train_and_evaluate(experiment, devices=None):
  """Trains (or resumes) the run of `experiment`; returns its final metrics.

  On several machines (`TF_CONFIG`, `MultiWorkerMirroredStrategy`) every
  worker runs this; only the chief writes checkpoints, summaries, samples and
  the export into `model_dir`, the others write into temporary directories
  that are removed at the end. A SIGTERM to any worker makes all of them save
  a checkpoint at the same step and exit (TF's `PreemptionCheckpointHandler`);
  on one machine SIGTERM and Ctrl-C save a checkpoint after the step in
  progress and raise `TrainingInterrupted`. The chief holds the model
  directory's lock for the whole run; `config.restart` deletes its
  checkpoints first. Its first line says the precision where the hardware
  chose it (`config.hardware.precision_messages`).

  It trains the flow of a resolved
  `tf_realnvp.config.experiment.Experiment` by maximum likelihood (Dinh et
  al. 2017, Sec. 4.1): Adam on `tf_realnvp.loss`, with the learning-rate
  warmup and decay and the Polyak averaging of `optimizers.make_optimizer`;
  evaluation, samples and the export use the averaged weights when there are
  any; the export computes in float32 whatever the training precision
  (`Experiment.float32_flow`). Re-running it with the same `model_dir`
  resumes from the latest checkpoint, which holds the weights, the optimizer
  state (with the averages), the step counters and the position in the data
  stream; all randomness is derived from `config.seed` by stateless ops, so a
  resumed run ends with the same weights as an uninterrupted one.

  Args:
    experiment: a `tf_realnvp.config.experiment.Experiment`
      (`experiment.resolve`).
    devices: optional device names for the strategy (tests use logical CPUs).

  Returns:
    Dict with `step`, `bad_steps`, the test metric and `model_dir`.

  Raises:
    experiment.ConfigError: if `model_dir` holds a run with other settings,
      or one already past `train_steps`.
    run_dir.ModelDirBusyError: if another run holds `model_dir`.
    run_dir.NoIntactCheckpointError: if none of its checkpoints reads back.
    TrainingInterrupted: after a signal, with the checkpoint saved.
    TrainingDivergedError: after `max_bad_steps` non-finite steps in a row.
  """
  config = experiment.config
  try:
    strategy = strategies.make_strategy(config.strategy, devices)  # First.
    strategies.per_replica_batch_size(config.batch_size, strategy)
  except ValueError as error:
    raise experiment_lib.ConfigError(str(error)) from None
  checks.check_replicas(config, strategy.num_replicas_in_sync)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  chief = strategies.is_chief(strategy)
  if not chief:
    experiment, planned_steps = _resumed(experiment)
    write_dir = tempfile.mkdtemp(prefix='tf_realnvp_')
    try:
      return Training(experiment, strategy, write_dir,
                      planned_steps=planned_steps).run()
    finally:
      shutil.rmtree(write_dir, ignore_errors=True)
  # With several workers, TensorFlow's handler watches for SIGTERM.
  with run_dir.locked(config.model_dir), (
      contextlib.nullcontext() if strategies.is_multi_worker(strategy)
      else _StopOnSignal()) as stop:
    if config.restart:
      run_dir.remove_checkpoints(
          os.path.join(config.model_dir, 'checkpoints'))
    experiment, planned_steps = _resumed(experiment)
    line, warning = hardware.precision_messages(experiment)
    if line:
      print(line, flush=True)
    if warning:
      logging.warning(warning)
    return Training(experiment, strategy, config.model_dir, stop,
                    planned_steps).run()


def _resumed(experiment):
  """`(experiment, planned_steps)`: the experiment that goes on with the run
  in its model directory (`experiment.resumed`) and the length that run was
  planned for; `(experiment, None)` for a new run or `--restart`. The run's
  config.json is read as it is, not resolved again: the data are described
  once."""
  config = experiment.config
  if config.restart or not os.path.exists(
      os.path.join(config.model_dir, 'config.json')):
    return experiment, None
  return experiment_lib.resumed(
      experiment, config_lib.Config.load(config.model_dir))


class Training:
  """One run of `train_and_evaluate`: its objects, and the steps of its loop.

  This task writes into `write_dir` (the model directory on the chief). A
  `_StopOnSignal` as `stop` ends the run after the step in which it received
  a signal. `planned_steps`: the length the run on disk was planned for;
  with a decaying learning rate and another length asked, the rest of the
  schedule is re-planned once the checkpoint is restored (`_replan`).
  """

  def __init__(self, experiment, strategy, write_dir, stop=None,
               planned_steps=None):
    self.experiment = experiment
    self.stop = stop
    self.config = config = experiment.config
    self.strategy = strategy
    self.write_dir = write_dir
    self.total_steps = experiment.total_steps()
    self.eval_every = experiment.eval_interval()
    self.all_train_data = experiment.dataset('train')
    self.train_data = strategies.worker_shard(self.all_train_data, strategy)
    self.test_data = experiment.dataset('test')
    if config.eval_batches:
      self.test_data = self.test_data.take(config.eval_batches)
    self._build_model()
    check_batches(self.train_data, self.flow)
    check_batches(self.test_data, self.flow)
    self.iterator = iter(self.train_data)
    self.evaluator = evaluation.Evaluator(self.flow, strategy)
    self._restore(planned_steps)
    self.writers = {
        split: tf.summary.create_file_writer(os.path.join(write_dir, split))
        for split in ('train', 'test')}
    self.result = {}

  def _build_model(self):
    """The flow, the optimizer and the compiled steps, under the strategy."""
    config = self.config
    jit = config.jit if config.jit is not None else bool(
        tf.config.list_logical_devices('GPU'))
    keras.utils.set_random_seed(config.seed)
    with self.strategy.scope():
      self.flow = self.experiment.build_flow()
      self.optimizer = optimizers.make_optimizer(
          ema_decay=config.ema_decay, **self._schedule_settings())
      self.optimizer.build(self.flow.trainable_variables)
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      self.train_step = TrainStep(self.flow, self.optimizer, self.strategy,
                         config.batch_size, config.l2, config.clip_norm, jit)

  def _schedule_settings(self, **overrides):
    """The `optimizers.learning_rate_schedule` arguments of the run."""
    config = self.config
    return dict(dict(
        learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
        lr_decay=config.lr_decay, total_steps=self.total_steps,
        lr_decay_floor=config.lr_decay_floor, lr_plan=config.lr_plan),
                **overrides)

  def _set_lr_plan(self, lr_plan):
    """Makes `lr_plan` the run's (its config's and its optimizer's)."""
    self.config = dataclasses.replace(self.config, lr_plan=lr_plan)
    self.experiment = dataclasses.replace(self.experiment, config=self.config)
    self.optimizer.learning_rate = optimizers.learning_rate_schedule(
        **self._schedule_settings())

  def _restore(self, planned_steps):
    """Resumes from the latest checkpoint in the model directory, if any."""
    config = self.config
    # The averages are also the optimizer's variables; saved under their own
    # name too, `evaluation.restore_flow` can read them without rebuilding the
    # optimizer.
    averages = optimizers.moving_averages(self.optimizer)
    self.checkpoint = tf.train.Checkpoint(
        flow=self.flow, optimizer=self.optimizer, step=self.step,
        bad_steps=self.train_step.bad_steps, data=self.iterator,
        **({'averages': averages} if averages else {}))
    restored = run_dir.restore_newest_intact(
        self.checkpoint, os.path.join(config.model_dir, 'checkpoints'),
        tidy=self.write_dir == config.model_dir)
    if restored:
      logging.info('Resumed from %s at step %d.', restored, self.current_step)
    if self.current_step > self.total_steps:
      raise experiment_lib.ConfigError(
          f'The run in {config.model_dir} is at step {self.current_step}, '
          f'past the {self.total_steps} steps asked: ask for more, or use '
          'another --model_dir.')
    if not restored and config.lr_plan:
      self._set_lr_plan(())  # Config.json without checkpoints: from step 0.
    elif restored and planned_steps not in (None, self.total_steps):
      self._replan(planned_steps)
    # Every worker reads the same (unsharded) first batch.
    initialize_actnorms(self.flow, lambda: flows.log_prob(
        self.flow, *objective.events_and_context(next(iter(self.all_train_data)))))
    optimizers.start_averages(self.optimizer, self.train_step.variables)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(self.write_dir, 'checkpoints'),
        max_to_keep=config.keep_checkpoints)
    self.config.save(self.write_dir)
    self.last_saved = self.current_step if restored else None

  def _replan(self, planned_steps):
    """Re-plans a decaying learning rate for the new length (one line says
    how): from the rate reached, over a short ramp, to the schedule of a run
    of the new length, then with it to the floor at the new end."""
    config = self.config
    if config.lr_decay == 'none':
      return  # The schedule does not depend on the length.
    update = int(self.optimizer.iterations.numpy())
    planned = optimizers.learning_rate_schedule(
        **self._schedule_settings(total_steps=planned_steps))
    change = optimizers.length_change(update, float(planned(update)),
                                      planned_steps, self.total_steps)
    self._set_lr_plan(config.lr_plan + (change,))
    # The rate at the end of the ramp, on the new length's schedule.
    target = float(optimizers.learning_rate_schedule(
        **self._schedule_settings(lr_plan=()))(change['update'] + change['ramp']))
    if strategies.is_chief(self.strategy):
      print(f'Training the run in {config.model_dir} from step '
            f'{self.current_step} to {self.total_steps} (it was planned for '
            f'{planned_steps}): the learning rate moves from {change["rate"]:.3g} '
            f'to that of a {self.total_steps}-step run ({target:.3g}) over '
            f'{change["ramp"]} steps, then decays with it to '
            f'{config.lr_decay_floor * config.learning_rate:.3g} at step '
            f'{self.total_steps}.', flush=True)

  @property
  def current_step(self):
    return int(self.step.numpy())

  def run(self):
    """Trains to the last step, saves, exports; returns the final metrics."""
    advance = self._advance
    if strategies.is_multi_worker(self.strategy):
      preemption = tf.distribute.experimental.PreemptionCheckpointHandler(
          self.strategy.cluster_resolver, self.manager)
      advance = lambda: preemption.run(self._advance)
    # The chief shows the progress; the other workers would repeat it.
    chief = strategies.is_chief(self.strategy)
    progress = console.Progress(
        self.total_steps, stream=sys.stdout if chief else io.StringIO())
    consecutive_bad = 0
    with progress:
      progress.update(self.current_step)
      while self.current_step < self.total_steps:
        # The rate of this step's update: the schedule is a function of the
        # updates applied before it.
        learning_rate = (float(self.optimizer.learning_rate.numpy())
                         if self._logs_at(self.current_step + 1) else None)
        start = time.perf_counter()
        mean_nll, applied = advance()
        seconds = time.perf_counter() - start
        consecutive_bad = 0 if bool(applied) else consecutive_bad + 1
        self._stop_if_diverged(consecutive_bad, float(mean_nll))
        metric = self.experiment.metric(float(mean_nll))
        progress.update(self.current_step, **{
            self.experiment.metric_name: metric,
            'examples/s': round(self.config.batch_size / seconds),
            'skipped': int(self.train_step.bad_steps.numpy())})
        self._log(metric, learning_rate, seconds)
        self._checkpoint_and_evaluate()
        if self.stop and self.stop.received:
          self._save()
          raise TrainingInterrupted(
              f'{self.stop.received} at step {self.current_step}: checkpoint '
              'saved; run the same command again to resume.')
    self._save()
    self._export()
    self.result.update(step=self.current_step,
                       bad_steps=int(self.train_step.bad_steps.numpy()),
                       model_dir=self.config.model_dir)
    return self.result

  def _advance(self):
    """One update on the next batch, counted."""
    outputs = self.train_step(self.iterator)
    self.step.assign_add(1)
    return outputs

  def _stop_if_diverged(self, consecutive_bad, mean_nll):
    if consecutive_bad >= self.config.max_bad_steps:
      self._save()
      raise TrainingDivergedError(
          f'{consecutive_bad} consecutive steps had a non-finite loss or '
          f'gradient (last loss {mean_nll}); stopped at step '
          f'{self.current_step}. Lower --learning_rate or --clip_norm, or '
          'check the data.')

  def _logs_at(self, step):
    return step % self.config.log_every == 0 or step == self.total_steps

  def _log(self, metric, learning_rate, seconds):
    """TensorBoard training scalars every `log_every` steps and at the end."""
    step = self.current_step
    if not self._logs_at(step):
      return
    with self.writers['train'].as_default(step=step):
      tf.summary.scalar(self.experiment.metric_name, metric)
      tf.summary.scalar('learning_rate', learning_rate)
      tf.summary.scalar('skipped_steps', self.train_step.bad_steps)
      tf.summary.scalar('examples_per_second', self.config.batch_size / seconds)

  def _checkpoint_and_evaluate(self):
    step = self.current_step
    if step % self.config.checkpoint_every == 0:
      self._save()
    if step % self.eval_every and step != self.total_steps:
      return
    name = self.experiment.metric_name
    with optimizers.averaged_weights(self.optimizer, self.train_step.variables):
      test_metric = self.experiment.metric(self.evaluator.mean_nll(self.test_data))
      with self.writers['test'].as_default(step=step):
        tf.summary.scalar(name, test_metric)
      logging.info('step %d: test %s %.4f', step, name, test_metric)
      self.result = {'step': step, f'test_{name}': test_metric}
      evaluation.write_samples(self.flow, self.experiment, self.write_dir,
                               step, self.writers['test'])

  def _save(self):
    step = self.current_step
    if self.last_saved == step:
      return
    try:
      self.manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as error:
      raise run_dir.SaveError(
          self.manager.directory, step, self.last_saved, error) from error
    self.last_saved = step

  def _export(self):
    if not self.config.export:
      return
    from tf_realnvp.serving import saved_model  # pylint: disable=g-import-not-at-top
    with optimizers.averaged_weights(self.optimizer, self.train_step.variables):
      saved_model.export_saved_model(
          self.experiment.float32_flow(self.flow),
          os.path.join(self.write_dir, 'saved_model'))
