"""Real RGB patches with no download, from Matplotlib's sample photo.

`photo()` is the photograph Matplotlib ships as sample data
(`grace_hopper.jpg`, 600x512 RGB). `split_photo` cuts it into `TILE x TILE`
tiles coloured like a checkerboard: training crops come from the tiles of
one colour, test patches from the other. Both sets then cover the whole
picture (face, uniform, background) and so come from one distribution, while
no test pixel lies in any training crop.
"""

import math

import matplotlib.cbook
import matplotlib.image
import numpy as np
import tensorflow as tf

PHOTO = 'grace_hopper.jpg'
TILE = 64  # Side of the checkerboard's squares, in pixels.


def photo():
  """The sample photograph Matplotlib ships, `uint8 [600, 512, 3]`."""
  with matplotlib.cbook.get_sample_data(PHOTO) as f:
    return np.asarray(matplotlib.image.imread(f, format='jpg'), np.uint8)


def split_photo(image, patch_size, num_test):
  """`(training tiles, test patches)` of `image`, checkerboard-split.

  Args:
    image: `[H, W, 3]` array; rows and columns past the last whole tile are
      dropped.
    patch_size: side of the patches, at most `TILE`.
    num_test: test patches, on an evenly spread grid of positions inside the
      test tiles.

  Returns:
    The training tiles, `[N, TILE, TILE, 3]` (crop them with
    `random_patches`), and the test patches, `[num_test, patch_size,
    patch_size, 3]`.
  """
  if patch_size > TILE:
    raise ValueError(f'patch_size {patch_size} exceeds the tile side {TILE}.')
  origins = [(r, c) for r in range(0, image.shape[0] - TILE + 1, TILE)
             for c in range(0, image.shape[1] - TILE + 1, TILE)]
  tiles = {colour: np.stack([image[r:r + TILE, c:c + TILE]
                             for r, c in origins
                             if (r // TILE + c // TILE) % 2 == colour])
           for colour in (0, 1)}
  per_side = math.ceil(math.sqrt(num_test / len(tiles[1])))
  offsets = np.linspace(0, TILE - patch_size, per_side, dtype=int)
  candidates = [tile[r:r + patch_size, c:c + patch_size]
                for tile in tiles[1] for r in offsets for c in offsets]
  chosen = np.linspace(0, len(candidates) - 1, num_test).round().astype(int)
  return tiles[0], np.stack([candidates[i] for i in chosen])


def random_patches(tiles, batch_size, patch_size, seed):
  """`batch_size` crops of random `tiles` at stateless random positions."""
  tile_index = tf.random.stateless_uniform(
      [batch_size], seed, 0, len(tiles), tf.int32)
  tops, lefts = tf.unstack(tf.random.stateless_uniform(
      [2, batch_size], seed + [0, 1], 0, TILE - patch_size + 1, tf.int32))
  return tf.constant(np.stack([
      tiles[i, t:t + patch_size, l:l + patch_size]
      for i, t, l in zip(tile_index.numpy(), tops.numpy(), lefts.numpy())]))
