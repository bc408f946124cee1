"""Training or evaluation mode, for the layers whose output depends on it.

Batch normalization (inside the s/t networks, `networks.ResNetConditioner`
with `batch_norm=True`, and as a bijector, `bijectors.BatchNorm`) normalizes
with the statistics of the current batch in training and with running
averages in evaluation. A flow's `log_prob` and `sample` are TFP calls with
no `training` argument, so the mode is set around them:

    with tf_realnvp.training_mode.training():
      loss = -tf.reduce_mean(flow.log_prob(x))   # batch statistics, updated

Outside the block every layer is in evaluation mode: each example's density
is a function of that example alone. The mode is read when a function is
traced: a `tf.function` traced in one mode keeps it, so trace training and
evaluation steps as separate functions (as the trainer does).

The mode is one setting of the process, not of a thread or a context: the
replicas of a `MirroredStrategy` run in threads of their own, and they see
the mode set around `strategy.run` as well as one set inside each replica
(the process is in training mode while any block is open).
"""

import contextlib
import threading

_lock = threading.Lock()
_open_blocks = [0]


def is_training():
  """Whether the code running now is in training mode."""
  return _open_blocks[0] > 0


@contextlib.contextmanager
def training():
  """Runs the block in training mode."""
  with _lock:
    _open_blocks[0] += 1
  try:
    yield
  finally:
    with _lock:
      _open_blocks[0] -= 1
