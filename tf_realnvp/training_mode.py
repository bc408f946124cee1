"""The mode (training, evaluation, frozen) of the layers that depend on it."""

import collections
import contextlib
import threading

_lock = threading.Lock()
_open_blocks = collections.Counter()


def is_training():
  """Whether the code running now is in training mode."""
  return _open_blocks['training'] > 0


def is_frozen():
  """Whether the code running now is traced with its weights as constants."""
  return _open_blocks['frozen'] > 0


@contextlib.contextmanager
def _block(mode):
  with _lock:
    _open_blocks[mode] += 1
  try:
    yield
  finally:
    with _lock:
      _open_blocks[mode] -= 1


def training():
  """Runs the block in training mode.

  Batch normalization (inside the s/t networks, `networks.ResNetConditioner`
  with `batch_norm=True`, and as a bijector, `bijectors.BatchNorm`) normalizes
  with the statistics of the current batch in training and with running
  averages in evaluation. A flow's `log_prob` and `sample` are TFP calls with
  no `training` argument, so the mode is set around them:

      with tf_realnvp.training_mode.training():
        loss = -tf.reduce_mean(flow.log_prob(x))   # batch statistics, updated

  Outside the block every layer is in evaluation mode: each example's density
  is a function of that example alone.

  Frozen mode is evaluation mode for a trace that a file format stores with its
  weights as constants (TFLite, ONNX: `serving.portable`): no layer assigns a
  variable (Glow's `ActNorm` computes with the values it holds instead of
  initializing itself on a first batch), and an inverse that would solve a
  linear system multiplies by the inverse matrix computed when tracing (Glow's
  `InvertibleConv1x1`: TFLite has no triangular solve).

  A mode is read when a function is traced: a `tf.function` traced in one mode
  keeps it, so trace training and evaluation steps as separate functions (as
  the trainer does). A mode is one setting of the process, not of a thread or a
  context: the replicas of a `MirroredStrategy` run in threads of their own,
  and they see the mode set around `strategy.run` as well as one set inside
  each replica (the process is in a mode while any block of it is open).
  """
  return _block('training')


def frozen():
  """Runs the block in frozen mode (see `training`)."""
  return _block('frozen')
