"""Real 32x32 photo patches with no download, from Matplotlib's sample photo.

`photo()` is the photograph Matplotlib ships as sample data
(`grace_hopper.jpg`, 600x512 RGB). `split_photo` keeps its top rows for
training crops and cuts a grid of test patches from the rows below, so a test
figure is measured on pixels no training crop contains.
"""

import math

import matplotlib.cbook
import matplotlib.image
import numpy as np
import tensorflow as tf

PHOTO = 'grace_hopper.jpg'
TRAIN_FRACTION = 0.75  # Of the photo's rows; the rest hold the test patches.


def photo():
  """The sample photograph Matplotlib ships, `uint8 [600, 512, 3]`."""
  with matplotlib.cbook.get_sample_data(PHOTO) as f:
    return np.asarray(matplotlib.image.imread(f, format='jpg'), np.uint8)


def split_photo(image, patch_size, num_test):
  """`(train rows, test patches)`: the top rows, and a grid of patches below."""
  boundary = int(image.shape[0] * TRAIN_FRACTION)
  train, below = image[:boundary], image[boundary:]
  rows = np.linspace(0, below.shape[0] - patch_size,
                     max(1, int(math.sqrt(num_test))), dtype=int)
  cols = np.linspace(0, below.shape[1] - patch_size,
                     math.ceil(num_test / len(rows)), dtype=int)
  test = np.stack([below[r:r + patch_size, c:c + patch_size]
                   for r in rows for c in cols])[:num_test]
  return train, test


def random_patches(image, batch_size, patch_size, seed):
  """`batch_size` crops of `image` at stateless random positions."""
  image = tf.constant(image)
  tops = tf.random.stateless_uniform(
      [batch_size], seed, 0, image.shape[0] - patch_size + 1, tf.int32)
  lefts = tf.random.stateless_uniform(
      [batch_size], seed + [0, 1], 0, image.shape[1] - patch_size + 1,
      tf.int32)
  return tf.stack([image[t:t + patch_size, l:l + patch_size]
                   for t, l in zip(tops.numpy(), lefts.numpy())])
