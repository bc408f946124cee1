"""Speed and memory of the input pipeline alone, held in memory or streamed.

    python -m benchmarks.input_speed --data_dir=/tmp/mock_tfds

prepares a mock TFDS dataset of random 8-bit images (`mock_images/32x32`,
CIFAR-10's shape, and `mock_images/64x64`, ImageNet64's) as array_record
files in `--data_dir`, then, each in a fresh process, iterates
`data.make_dataset` over its training split, shuffled, flipped and
dequantized as training reads it, with the split held in memory or streamed
from the files at random access, and prints images/s (after the first batch)
and the process's peak resident memory.
"""

import json
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_realnvp import data

flags.DEFINE_string('data_dir', '/tmp/mock_tfds', 'Where the mock data go.')
flags.DEFINE_integer('num_images', 50_000, 'Training images per dataset.')
flags.DEFINE_integer('batches', 300, 'Batches of 64 to time.')
flags.DEFINE_string('measure', None, 'Internal: DATASET:stream|memory, one '
                    'measurement in this process.')
FLAGS = flags.FLAGS
SIDES = (32, 64)


class MockImages(tfds.core.GeneratorBasedBuilder):
  """Random 8-bit images with labels, of CIFAR-10's or ImageNet64's shape."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f'{side}x{side}')
                     for side in SIDES]

  def _info(self):
    side = int(self.builder_config.name.split('x')[0])
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(side, side, 3)),
            'label': tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(FLAGS.num_images, 0),
            'test': self._generate_examples(FLAGS.num_images // 10, 1)}

  def _generate_examples(self, num_images, seed):
    side = int(self.builder_config.name.split('x')[0])
    rng = np.random.default_rng(seed)
    for i in range(num_images):
      yield i, {'image': rng.integers(0, 256, (side, side, 3), np.uint8),
                'label': i % 10}


def measure(name, stream):
  start = time.perf_counter()
  dataset = data.make_dataset(
      name, 'train', 64, seed=0, data_dir=FLAGS.data_dir, random_flip=True,
      download=False, stream=stream)
  batches = iter(dataset)
  next(batches)
  first = time.perf_counter()
  for _ in range(FLAGS.batches):
    next(batches)
  rate = FLAGS.batches * 64 / (time.perf_counter() - first)
  return dict(dataset=name, path='stream' if stream else 'memory',
              first_batch_s=round(first - start, 1),
              images_per_s=round(rate),
              peak_memory_mb=peak_memory_mb())


def peak_memory_mb():
  """This process's peak resident memory (VmHWM: unlike ru_maxrss, it does
  not inherit the parent's peak across fork and exec)."""
  with open('/proc/self/status') as status:
    line = next(l for l in status if l.startswith('VmHWM:'))
  return round(int(line.split()[1]) / 1024)


def main(argv):
  del argv
  if FLAGS.measure:
    name, path = FLAGS.measure.rsplit(':', 1)
    print(json.dumps(measure(name, path == 'stream')))
    return
  for side in SIDES:
    builder = MockImages(config=f'{side}x{side}', data_dir=FLAGS.data_dir,
                         file_format='array_record')
    builder.download_and_prepare()
  for side in SIDES:
    for path in ('memory', 'stream'):
      result = subprocess.run(
          [sys.executable, '-m', 'benchmarks.input_speed',
           f'--data_dir={FLAGS.data_dir}', f'--batches={FLAGS.batches}',
           f'--measure=mock_images/{side}x{side}:{path}'],
          capture_output=True, text=True, check=True)
      print(result.stdout.strip().splitlines()[-1], flush=True)
  print(f'TensorFlow {tf.__version__}, tensorflow-datasets {tfds.__version__}')


if __name__ == '__main__':
  app.run(main)
