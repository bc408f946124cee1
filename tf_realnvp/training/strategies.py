"""Distribution over devices and machines: strategy, chief, shards."""

import json
import os

import tensorflow as tf

from tf_realnvp.config.settings import STRATEGIES


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

  On one machine `MirroredStrategy` splits each global batch over its GPUs (or
  one device runs it all); over several machines `MultiWorkerMirroredStrategy`,
  configured by the `TF_CONFIG` environment variable, does the same across
  workers, and only the chief writes the run's files.
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


def is_multi_worker(strategy):
  """Whether `strategy` spans several machines."""
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def per_replica_batch_size(global_batch_size, strategy):
  """Each replica's share of a global batch; a `ValueError` if the replicas
  cannot share it evenly."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(f'--batch_size={global_batch_size} must be divisible by '
                     f'the {replicas} replicas.')
  return global_batch_size // replicas


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
  global_batch = tf.nest.flatten(dataset.element_spec)[0].shape[0]
  return dataset.unbatch().shard(workers, resolver.task_id).batch(
      global_batch // workers, drop_remainder=True)
