"""Folders of made-up images for out-of-distribution checks, no download.

    python -m benchmarks.ood_folders --out_dir=/tmp/ood --size=16 --count=600

writes PNG files into `OUT_DIR/train` (smooth random fields: the training
data), `OUT_DIR/held_out` (more fields, other draws), `OUT_DIR/flat` (one
colour per image) and `OUT_DIR/noise` (uniform noise per pixel). With
`--kind=photo` the training and held-out images are patches of a real photo
instead (`photo_patches`: no held-out pixel lies in a training patch). The two
failure cases of a likelihood-based detector are the last two (Nalisnick et
al. 2019, arXiv 1810.09136; Serra et al. 2020, arXiv 1909.11480): flat
images are simpler than the data and a flow gives them a high likelihood,
noise is more complex and gets a low one.
"""

import functools
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import photo_patches

# Coarse grid side of a smooth field, and the noise on top of it (pixel
# levels), so a field has texture as well as shape.
FIELD_GRID = 4
FIELD_NOISE = 4.


def smooth_fields(count, size, channels, seed):
  """`uint8 [count, size, size, channels]`: uniform values on a
  `FIELD_GRID` square grid, bicubically upsampled, plus Gaussian noise."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0., 255., (count, FIELD_GRID, FIELD_GRID, channels))
  fields = tf.image.resize(coarse, (size, size), 'bicubic').numpy()
  fields += FIELD_NOISE * rng.standard_normal(fields.shape)
  return np.clip(np.round(fields), 0, 255).astype(np.uint8)


def flat_colours(count, size, channels, seed):
  """`uint8 [count, size, size, channels]`, each image one uniform colour."""
  colours = np.random.default_rng(seed).integers(0, 256, (count, 1, 1, channels))
  return np.broadcast_to(colours, (count, size, size, channels)).astype(np.uint8)


def uniform_noise(count, size, channels, seed):
  """`uint8 [count, size, size, channels]`, every value uniform in 0..255."""
  return np.random.default_rng(seed).integers(
      0, 256, (count, size, size, channels)).astype(np.uint8)


def _photo(count, size, channels, seed, held_out):
  """Training patches (random crops) or held-out patches of the photo."""
  tiles, test = photo_patches.split_photo(photo_patches.photo(), size, count)
  patches = test if held_out else photo_patches.random_patches(
      tiles, count, size, tf.constant([seed, 0])).numpy()
  return patches if channels == 3 else tf.image.rgb_to_grayscale(
      patches).numpy()


def write_folder(images, folder):
  """Writes `images` as `folder/00000.png`, ...; returns the file names."""
  os.makedirs(folder, exist_ok=True)
  names = [f'{i:05d}.png' for i in range(len(images))]
  for name, image in zip(names, images):
    tf.io.write_file(os.path.join(folder, name), tf.io.encode_png(image))
  return names


# Folder name -> (maker, seed offset): the training fields and the held-out
# fields are draws of one generator with other seeds.
SETS = {'train': (smooth_fields, 0), 'held_out': (smooth_fields, 1),
        'flat': (flat_colours, 2), 'noise': (uniform_noise, 3)}
# --kind=photo: the training and held-out folders hold photo patches.
PHOTO_SETS = {**SETS, 'train': (functools.partial(_photo, held_out=False), 0),
              'held_out': (functools.partial(_photo, held_out=True), 1)}


def define_flags():
  """The flags of the command line; defined only when run as a program, so
  that tests importing the makers above define none."""
  flags.DEFINE_string('out_dir', '/tmp/ood', 'Where the folders go.')
  flags.DEFINE_enum('kind', 'fields', ['fields', 'photo'],
                    'Training images: smooth random fields or photo patches.')
  flags.DEFINE_integer('size', 16, 'Image side.')
  flags.DEFINE_integer('channels', 1, '1 or 3.')
  flags.DEFINE_integer('count', 600, 'Images of the training folder.')
  flags.DEFINE_integer('count_other', 200, 'Images of each other folder.')
  flags.DEFINE_integer('seed', 0, 'NumPy seed of the first folder.')


def main(argv):
  del argv
  f = flags.FLAGS
  for name, (make, offset) in (PHOTO_SETS if f.kind == 'photo'
                               else SETS).items():
    count = f.count if name == 'train' else f.count_other
    folder = os.path.join(f.out_dir, name)
    write_folder(make(count, f.size, f.channels, f.seed + offset), folder)
    print(folder)


if __name__ == '__main__':
  define_flags()
  app.run(main)
