"""The compiled training step: one update of the flow on the next batch.
"""

import tensorflow as tf

from tf_realnvp import flows
from tf_realnvp import training_mode
from tf_realnvp.flows import objective
from tf_realnvp.training import strategies

SUM = tf.distribute.ReduceOp.SUM


def check_batches(dataset, flow):
  """Raises if `dataset`'s batches (events, or `(events, context)`) cannot
  be events (and contexts) of `flow`."""
  spec, context = objective.events_and_context(dataset.element_spec)
  conditional = flows.context_of(flow) is not None
  if (context is not None) != conditional:
    raise ValueError(
        'The input pipeline yields '
        f'{"(events, context) pairs" if context is not None else "events alone"}'
        f', and the flow is {"" if conditional else "not "}conditional.')
  expected = tf.TensorShape([None]).concatenate(flow.event_shape)
  if spec.dtype != flow.dtype or not expected.is_compatible_with(spec.shape):
    raise ValueError(
        f'The input pipeline yields {spec.dtype.name} batches of shape '
        f'{spec.shape}; the flow needs {flow.dtype.name} batches of shape '
        f'{expected}.')


class TrainStep:
  """The compiled training step of `flow` under `strategy`: `train_step(iterator)`
  updates the weights on the next batch.

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
    self.replica_batch_size = strategies.per_replica_batch_size(
        global_batch_size, strategy)
    self.bad_steps = tf.Variable(0, dtype=tf.int64, trainable=False,
                                 name='bad_steps')
    # Traced without AutoGraph, as every function of the package: the code
    # branches with `tf.cond` only, so there is nothing to convert.
    self._replica_gradients = tf.function(self._gradients, jit_compile=jit,
                                          autograph=False)
    self._compiled_update = tf.function(self._update, autograph=False)

  def __call__(self, iterator):
    return self._compiled_update(iterator)

  def _gradients(self, batch):
    """Per-replica NLL sum and gradients of this replica's share of the loss.

    Every replica has an equal share of the global batch, so the replicas'
    summed gradients are those of `objective.loss` on the whole batch. The
    forward pass runs in training mode (`tf_realnvp.training_mode`): batch
    normalization uses and updates the batch's statistics.
    """
    x, context = objective.events_and_context(batch)
    with tf.GradientTape() as tape:
      with training_mode.training():
        loss, mean_nll = objective.loss(self.flow, x, self.l2, context)
      loss = loss / self.strategy.num_replicas_in_sync
    nll_sum = mean_nll * tf.cast(tf.shape(x)[0], mean_nll.dtype)
    return nll_sum, tape.gradient(loss, self.variables)

  def _split(self, batch):
    """Gives each local replica its contiguous share of this worker's batch."""
    share = self.replica_batch_size
    local_replicas = len(self.strategy.extended.worker_devices)

    def replica_share(context):
      start = context.replica_id_in_sync_group % local_replicas * share
      return tf.nest.map_structure(lambda t: t[start:start + share], batch)
    return self.strategy.experimental_distribute_values_from_function(
        replica_share)

  def _update(self, iterator):
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

