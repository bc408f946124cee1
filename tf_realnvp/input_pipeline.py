"""Input pipelines: 2-D toy densities made in code, and the stream of 8-bit
images from the sources of `image_sources` (TFDS, a folder, a .npz file).

`make_dataset` yields float32 batches `[batch, *event_shape(name)]` that
`flow.log_prob` takes as they are: points of a 2-D toy density, or 8-bit
images plus uniform dequantization noise, values in `[0, 256)`; with
`labels=True`, `(x, label)` pairs, the label int32 `[batch]`.

Every random choice is a stateless function of the `seed` argument (no global
or op-level TF seed is involved):

  * the order of the examples: epoch `e` is the permutation
    `stateless_shuffle(range(N), fold_in(seed_order, e))` of the whole split;
  * the dequantization noise and the horizontal flip of the example at
    position `i` of the stream: `fold_in(seed_noise, i)`; its random crop
    (LSUN): `fold_in(seed_crop, i)`.

So a run is reproducible, the test split gives the same noise for every batch
size, and `tf.train.Checkpoint(iterator=iter(dataset))` saves and restores the
exact position in the stream (its state is a few counters and the prefetched
batches, not a shuffle buffer).

The permutation addresses examples by their index in the split: small splits
are decoded once into memory as `uint8` (cifar10: 150 MB, celeb_a at 64x64:
2 GB), larger ones are read at random access from disk as the stream asks for
them (`image_sources.read`); both give the same batches for the same seed.

Datasets that are not on disk: see `make_dataset`'s `download` argument.
"""

import numpy as np
import tensorflow as tf

from tf_realnvp import image_sources
from tf_realnvp.dequantization import dequantize

TOY_DATASETS = ('moons', 'circles', 'checkerboard', 'spirals', '8gaussians')
SPLITS = ('train', 'test')
# The classes of each toy (see `sample_toy`).
TOY_NUM_CLASSES = {'moons': 2, 'circles': 2, 'spirals': 2, 'checkerboard': 8,
                   '8gaussians': 8}

# The toy splits: (number of points, NumPy seed of the draw). They are fixed,
# so every run trains and is evaluated on the same points whatever its seed:
# split S is `sample_toy(name, *TOY_SPLITS[S])`.
TOY_SPLITS = {'train': (100_000, 0), 'test': (10_000, 1)}

# Standard deviation of the isotropic Gaussian noise around the noiseless
# toy shapes (see `sample_toy`).
TOY_NOISE_STD = {'moons': 0.1, 'circles': 0.1, 'spirals': 0.1,
                 '8gaussians': 0.5, 'checkerboard': 0.}
EIGHT_GAUSSIANS_RADIUS = 4.


# 2-D toy densities. Each shape returns its noiseless points and their labels.


def _unit_circle(angles):
  return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def _moons(rng, num_samples):
  t = rng.uniform(0., np.pi, num_samples)
  lower = rng.random(num_samples) < 0.5
  moon = np.where(lower[:, None], [1., 0.5] - _unit_circle(t), _unit_circle(t))
  return 2. * (moon - [0.5, 0.25]), lower


def _circles(rng, num_samples):
  inner = rng.random(num_samples) >= 0.5
  radius = np.where(inner, 1.5, 3.)
  return (radius[:, None] * _unit_circle(
      rng.uniform(0., 2 * np.pi, num_samples)), inner)


def _spirals(rng, num_samples):
  phi = 3 * np.pi * np.sqrt(rng.random(num_samples))
  second_arm = rng.random(num_samples) >= 0.5
  radius = np.where(second_arm, -1., 1.) * 4. * phi / (3 * np.pi)
  return radius[:, None] * _unit_circle(phi), second_arm


def _checkerboard(rng, num_samples):
  column = rng.integers(0, 4, num_samples)
  half = rng.integers(0, 2, num_samples)
  row = 2 * half + column % 2
  cells = np.stack([column, row], axis=-1)
  return -4. + 2. * (cells + rng.random((num_samples, 2))), 2 * column + half


def eight_gaussians_means():
  """The 8 means `4 (cos(k pi/4), sin(k pi/4))`, `k = 0..7`, shape `[8, 2]`."""
  return EIGHT_GAUSSIANS_RADIUS * _unit_circle(np.arange(8) * np.pi / 4)


def _eight_gaussians(rng, num_samples):
  component = rng.integers(0, 8, num_samples)
  return eight_gaussians_means()[component], component


_TOY_SHAPES = {'moons': _moons, 'circles': _circles, 'spirals': _spirals,
               'checkerboard': _checkerboard, '8gaussians': _eight_gaussians}


def sample_toy(name, num_samples, seed, *, labels=False):
  """Draws `num_samples` points of the 2-D toy density `name`.

  Each point is `x = c + sigma * eps`, `eps ~ N(0, I_2)`, with `c` drawn from
  the noiseless shape below and `sigma = TOY_NOISE_STD[name]`:

  * `moons` (sigma 0.1): two interleaved half circles, as in scikit-learn's
    `make_moons`, scaled by 2 and centred. With `t ~ U[0, pi)` and a fair
    coin, `c = 2 ((cos t, sin t) - (1/2, 1/4))` (upper moon, label 0: centre
    (-1, -1/2), radius 2) or `c = 2 ((1 - cos t, 1/2 - sin t) - (1/2, 1/4))`
    (lower moon, label 1: centre (1, 1/2), radius 2).
  * `circles` (sigma 0.1): two concentric circles about the origin, radius 3
    (label 0) or 1.5 (label 1) by a fair coin, angle `theta ~ U[0, 2 pi)`.
  * `spirals` (sigma 0.1): two interleaved spiral arms, `c = +-s(phi)` by a
    fair coin (label 0: `+`, 1: `-`) with
    `s(phi) = (4 phi / (3 pi)) (cos phi, sin phi)`, `phi = 3 pi sqrt(u)`,
    `u ~ U[0, 1)` (1.5 turns out to radius 4; the square root spreads the
    points evenly along the arms).
  * `checkerboard` (no noise): uniform on the 8 black squares of a 4x4 board
    on `[-4, 4)^2`; square `(i, j)` is `[-4 + 2i, -2 + 2i) x [-4 + 2j, -2 + 2j)`,
    black when `i + j` is even, and has label `2i + j // 2` (0..7). Density
    1/32 there, 0 elsewhere.
  * `8gaussians` (sigma 0.5): equal mixture of 8 isotropic Gaussians centred
    at `4 (cos(k pi/4), sin(k pi/4))`, `k = 0..7` (label `k`); exact
    density: `toy_log_prob_8gaussians`.

  The labels come from the same draws as the points: asking for them
  changes no point.

  Args:
    name: one of `TOY_DATASETS`.
    num_samples: number of points.
    seed: NumPy seed (anything `np.random.default_rng` takes); the points are
      a deterministic function of it.
    labels: also return each point's label (above).

  Returns:
    float32 array `[num_samples, 2]`; with `labels`, also int32
    `[num_samples]`.
  """
  _check_name(name, TOY_DATASETS)
  rng = np.random.default_rng(seed)
  points, point_labels = _TOY_SHAPES[name](rng, num_samples)
  if TOY_NOISE_STD[name]:
    points = points + TOY_NOISE_STD[name] * rng.standard_normal(points.shape)
  points = points.astype(np.float32)
  if labels:
    return points, point_labels.astype(np.int32)
  return points


def toy_log_prob_8gaussians(points):
  """Exact log-density of `8gaussians` (see `sample_toy`) at `points` `[..., 2]`.

      log p(x) = log sum_k (1/8) N(x; mu_k, 0.5^2 I_2),
      mu_k = 4 (cos(k pi/4), sin(k pi/4)),

  in float64 NumPy, shape `points.shape[:-1]`. `-mean(log p)` over the test
  split estimates the density's entropy, the lower bound of a model's NLL.
  """
  points = np.asarray(points, np.float64)
  variance = TOY_NOISE_STD['8gaussians'] ** 2
  squared_distances = np.sum(
      (points[..., None, :] - eight_gaussians_means()) ** 2, axis=-1)
  log_components = (-squared_distances / (2 * variance)
                    - np.log(2 * np.pi * variance) - np.log(8))
  return np.logaddexp.reduce(log_components, axis=-1)


# Facts, shapes and sizes.


def _check_name(name, names):
  if name not in names:
    raise ValueError(f'Unknown dataset {name!r}; expected one of {names}.')


def _check_split(split):
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')


def describe(name, image_size=None, channels=None, data_dir=None):
  """The `image_sources.Facts` of `name`: a 2-D toy, a TFDS image dataset
  (`cifar10`, `downsampled_imagenet/64x64`, ...), `folder:PATH` or
  `npz:FILE`. Reads no data (a folder is listed).

  Raises:
    ValueError: an unknown dataset (see `image_sources.describe`).
    image_sources.DataError: see `image_sources.describe`.
  """
  if name in TOY_DATASETS:
    return image_sources.Facts((2,), TOY_NUM_CLASSES[name], False, None)
  return image_sources.describe(name, image_size, channels, data_dir)


def event_shape(name, image_size=None, channels=None, data_dir=None):
  """Shape of one example of `name`; `image_size` matters where images are
  resized (`describe(name).resizes`), `channels` for folders."""
  return tuple(describe(name, image_size, channels, data_dir).event_shape)


def num_classes(name, data_dir=None):
  """Number of classes of `name`'s labels, or None when it has none."""
  return describe(name, data_dir=data_dir).num_classes


def num_examples(name, split, data_dir=None, *, download=True):
  """Number of examples in `split` ('train' or 'test') of `name`.

  Raises:
    image_sources.DatasetUnavailableError: as `make_dataset`.
  """
  _check_split(split)
  if name in TOY_DATASETS:
    return TOY_SPLITS[split][0]
  return image_sources.num_examples(name, split, data_dir, download=download)


# The stream.


def _fold_in(seed, data):
  """A new int32 stateless seed made from `seed` and the integer `data`."""
  return tf.cast(tf.random.experimental.stateless_fold_in(seed, data), tf.int32)


def _example_order(size, order_seed, shuffle, repeat):
  """Indices into the split in stream order, one epoch after another.

  Epoch `e` is `range(size)`, or with `shuffle` its permutation keyed by
  `fold_in(order_seed, e)`.
  """

  def epoch_order(epoch):
    order = tf.range(size, dtype=tf.int64)
    if shuffle:
      order = tf.random.experimental.stateless_shuffle(
          order, seed=_fold_in(order_seed, epoch))
    return tf.data.Dataset.from_tensor_slices(order)

  epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
  return epochs.flat_map(epoch_order)


def _dequantize_and_flip(image, seed, random_flip):
  """`image + U[0, 1)` noise, mirrored left-right with probability 1/2 if asked."""
  noise_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 2))
  if random_flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return dequantize(image, tf.cast(noise_seed, tf.int32))


def _crop(image, side, seed, random_crop):
  """A random (`random_crop`) or the central `side` x `side` crop."""
  if random_crop:
    return tf.image.stateless_random_crop(
        image, (side, side, image.shape[-1]), seed)
  return image_sources.central_square(image, side)


def make_dataset(name, split, batch_size, seed, *, data_dir=None,
                 image_size=None, channels=None, random_flip=False,
                 random_crop=False, shuffle=True, repeat=True,
                 drop_remainder=True, download=True, labels=False,
                 stream=None, strict_data=False):
  """Batches of `name` for `flow.log_prob`: float32 `[batch, *event_shape]`.

  2-D toys: the fixed points of `TOY_SPLITS[split]` (see `sample_toy`).
  Images (`image_sources`: a TFDS dataset by name, `folder:PATH`,
  `npz:FILE`): `uint8` pixels, preprocessed as `image_sources` says, plus
  `U[0, 1)` dequantization noise, so values in `[0, 256)`.

  The order (a new permutation of the whole split every epoch when
  `shuffle`), the noise, the flips and the crops are stateless functions of
  `seed` and of the position in the stream; see the module docstring. With
  `shuffle=False` the examples come in the split's order, and the noise of
  example `i` of a non-repeated split does not depend on `batch_size`.
  Unreadable files of a folder are dropped from the stream (counted and
  logged), unless `strict_data`.

  A TFDS dataset that is not prepared under `data_dir` is downloaded and
  prepared there when `download` is true and a request to
  `image_sources.CONNECTIVITY_PROBE_URL` is answered within
  `image_sources.CONNECTIVITY_TIMEOUT_S`; otherwise, or when the download
  fails, `DatasetUnavailableError` is raised at once, naming the dataset, the
  directory looked in and how to provide it. (Offline, tfds's own download
  retries for minutes before it fails; the probe avoids that wait.)

  Args:
    name: a 2-D toy (`TOY_DATASETS`) or an image source (see `describe`).
    split: 'train' or 'test' (a TFDS dataset without a test split: its
      validation split).
    batch_size: examples per batch.
    seed: int; fixes the order, the noise, the flips and the crops.
    data_dir: tensorflow-datasets data directory (default: tfds's,
      `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
    image_size: side of resized images (`describe(name).resizes`; default:
      the source's).
    channels: folders: 1 or 3, converting images that have the other count.
    random_flip: images only: mirror each example left-right with
      probability 1/2 (training augmentation).
    random_crop: LSUN: random crops (training) instead of the central one.
    shuffle: permute the examples (every epoch anew).
    repeat: repeat the split forever.
    drop_remainder: drop a last, smaller batch (gives a static batch size).
    download: allow tfds to download a missing dataset.
    labels: yield `(x, label)` pairs, label int32 `[batch]`; the `x` are the
      same as without labels.
    stream: read images from disk as the stream needs them (True) or hold
      the split in memory (False); None: by size (`image_sources.read`).
    strict_data: stop at an unreadable image file instead of skipping it.

  Returns:
    A `tf.data.Dataset` of float32 tensors `[batch_size, *event_shape]`, or
    of `(x, label)` pairs.

  Raises:
    ValueError: for an unknown dataset or split, `random_flip` for a toy, or
      `labels` for a dataset without labels.
    image_sources.DatasetUnavailableError: see above.
    image_sources.DataError: unusable images (`image_sources.read`).
  """
  _check_split(split)
  toy = name in TOY_DATASETS
  if random_flip and toy:
    raise ValueError(f'random_flip is for images; {name!r} is a 2-D toy.')
  if labels and num_classes(name, data_dir) is None:
    raise ValueError(f'{name} has no labels.')
  base_seed = tf.constant(divmod(seed, 2**31), tf.int32)
  if toy:
    points, point_labels = sample_toy(name, *TOY_SPLITS[split], labels=True)
    with tf.device('/cpu:0'):
      points, point_labels = tf.constant(points), tf.constant(point_labels)
    order = _example_order(len(points), _fold_in(base_seed, 0), shuffle,
                           repeat)
    dataset = order.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda indices: (tf.gather(points, indices),
                         tf.gather(point_labels, indices))
        if labels else tf.gather(points, indices))
    return dataset.prefetch(tf.data.AUTOTUNE)
  examples = image_sources.read(
      name, split, data_dir=data_dir, image_size=image_size,
      channels=channels, download=download, stream=stream,
      strict=strict_data)
  order = _example_order(examples.size, _fold_in(base_seed, 0), shuffle,
                         repeat)
  noise_seed, crop_seed = _fold_in(base_seed, 1), _fold_in(base_seed, 2)

  def example(position, index):
    image, label, ok = examples.fetch(index)
    if examples.crop:
      image = _crop(image, examples.crop, _fold_in(crop_seed, position),
                    random_crop)
    x = _dequantize_and_flip(image, _fold_in(noise_seed, position),
                             random_flip)
    return x, label, ok

  dataset = order.enumerate().map(
      example, num_parallel_calls=tf.data.AUTOTUNE).filter(
          lambda x, label, ok: ok).map(
              lambda x, label, ok: (x, label) if labels else x).batch(
                  batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)
