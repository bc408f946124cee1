"""The machine: what it is, its matmul ceiling, and the memory a run takes."""

import datetime
import os
import platform
import time

import keras
import tensorflow as tf
import tensorflow_probability as tfp

# A ceiling trial lasts at least this long, so launch overheads vanish.
_TRIAL_SECONDS = 0.2
_TRIALS = 3


def device():
  """The device the benchmark runs on: the first GPU, else the CPU."""
  return 'GPU:0' if tf.config.list_physical_devices('GPU') else 'CPU:0'


def description():
  """CPU model and cores, GPU name, library versions and the date."""
  gpus = tf.config.list_physical_devices('GPU')
  return {
      'cpu': _cpu_model(),
      'cpu_cores': os.cpu_count(),
      'cpu_cores_usable': (len(os.sched_getaffinity(0))
                           if hasattr(os, 'sched_getaffinity') else None),
      'gpu': (tf.config.experimental.get_device_details(gpus[0]).get(
          'device_name', gpus[0].name) if gpus else None),
      'device': device(),
      'tensorflow': tf.__version__,
      'tensorflow_probability': tfp.__version__,
      'keras': keras.__version__,
      'python': platform.python_version(),
      'onednn': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default'),
      'tf32': bool(gpus) and (
          tf.config.experimental.tensor_float_32_execution_enabled()),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
  }


def _cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def matmul_flops_per_second(dtype, size):
  """Best FLOP/s of a `size x size` matmul in `dtype`: the hardware ceiling.

  Measured in the calling process, with its TensorFlow and thread settings,
  through `tf.linalg.matmul` (oneDNN on CPU, cuBLAS on GPU; XLA's CPU matmul
  is no faster in float32 and half as fast in bfloat16). Each trial repeats
  the product for at least `_TRIAL_SECONDS`; the best trial counts.
  """
  seed = tf.constant([0, 0])
  a = tf.cast(tf.random.stateless_normal([size, size], seed), dtype)
  b = tf.cast(tf.random.stateless_normal([size, size], seed + 1), dtype)
  matmul = tf.function(tf.linalg.matmul)
  matmul(a, b).numpy()
  start = time.perf_counter()
  matmul(a, b).numpy()
  calls = max(1, int(_TRIAL_SECONDS / (time.perf_counter() - start)))
  best = 0.
  for _ in range(_TRIALS):
    start = time.perf_counter()
    for _ in range(calls):
      product = matmul(a, b)
    product.numpy()
    best = max(best, 2 * size**3 * calls / (time.perf_counter() - start))
  return best


class PeakMemory:
  """Context manager: peak memory of the work run inside it.

  `tensor_bytes` is the peak of TensorFlow's allocator on the benchmark's
  device (tensors and XLA buffers), reset on entry; on CPU it tracks only
  large allocations (a 16 KiB tensor is not counted, 256 KiB is), so a tiny
  model may read 0. `resident_bytes` is what that allocator held on entry
  (the weights, the optimizer's slots, the inputs): `tensor_bytes` minus it
  is what the work itself allocated. `rss_bytes` is the process's resident-set high-water
  mark (`VmHWM`, reset on entry through `/proc/self/clear_refs`) on Linux,
  else `None`: it counts the whole process, TensorFlow's runtime included.
  """

  def __enter__(self):
    self._device = device()
    tf.config.experimental.reset_memory_stats(self._device)
    self.resident_bytes = tf.config.experimental.get_memory_info(
        self._device)['current']
    self._rss_reset = _reset_rss_peak()
    return self

  def __exit__(self, *exc_info):
    self.tensor_bytes = tf.config.experimental.get_memory_info(
        self._device)['peak']
    self.rss_bytes = _rss_peak() if self._rss_reset else None


def _reset_rss_peak():
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


def _rss_peak():
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith('VmHWM:'):
        return int(line.split()[1]) * 1024
  return None
