"""`npz:FILE`: `uint8` images in a NumPy `.npz` file."""

import zipfile

import numpy as np
import tensorflow as tf

from tf_realnvp.data import sources


def _header(path, split):
  """`(shape, dtype)` of the array `split` in the .npz file, unread."""
  if not tf.io.gfile.exists(path):
    raise ValueError(f'no such file: {path}')
  try:
    with zipfile.ZipFile(path) as archive:
      with archive.open(f'{split}.npy') as member:
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }[np.lib.format.read_magic(member)]
        shape, _, dtype = read_header(member)
  except (KeyError, zipfile.BadZipFile, ValueError) as error:
    raise sources.DataError(
        f'{path} has no {split!r} array ({error}): save the images as '
        "np.savez(FILE, train=uint8 [N, H, W, C] or [N, H, W], test=..., "
        'train_labels=..., test_labels=...) (labels optional).') from None
  if dtype != np.uint8 or len(shape) not in (3, 4):
    raise sources.DataError(
        f'The {split!r} array of {path} is {dtype} {shape}; expected uint8 '
        '[N, H, W, C] or [N, H, W] (grayscale).')
  return shape, dtype


class NpzSource(sources.Source):
  """`npz:FILE`: the arrays `train` and `test`, labels optional.

  `np.savez(FILE, train=[N, H, W, C] or [N, H, W], test=..., train_labels=...,
  test_labels=...)` (labels optional; `[N, H, W]` is grayscale).

  The facts come from the arrays' headers, read without loading the arrays;
  a split is loaded into memory whole when it is read.
  """

  def __init__(self, name):
    path = name[len(sources.NPZ_PREFIX):]
    self.shapes = {split: _header(path, split)[0] for split in sources.SPLITS}
    event_shapes = [tuple(s[1:]) + (1,) * (len(s) == 3)
                    for s in self.shapes.values()]
    if event_shapes[0] != event_shapes[1]:
      raise sources.DataError(
          f'The train and test images of {path} differ in shape '
          f'({event_shapes[0]}, {event_shapes[1]}).')
    with np.load(path) as arrays:
      num_classes = (int(np.max(arrays['train_labels'])) + 1
                     if 'train_labels' in arrays.files else None)
    super().__init__(name, event_shapes[0], num_classes, path=path)

  def num_examples(self, split):
    sources.check_split(split)
    return self.shapes[split][0]

  def read(self, split, *, stream=None, strict=False):
    del stream, strict  # Always in memory; an array is read whole or not.
    sources.check_split(split)
    with np.load(self.path) as arrays:
      images = arrays[split]
      labels = (arrays[f'{split}_labels'] if f'{split}_labels' in arrays.files
                else None)
    if images.ndim == 3:
      images = images[..., None]
    return sources.Split.in_memory(images, labels)
