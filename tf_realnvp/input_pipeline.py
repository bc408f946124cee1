"""Input pipelines: 2-D toy densities made in code, and 8-bit images from TFDS.

`make_dataset` yields float32 batches `[batch, *event_shape(name)]` that
`flow.log_prob` takes as they are: points of a 2-D toy density, or 8-bit
images plus uniform dequantization noise, values in `[0, 256)`.

Every random choice is a stateless function of the `seed` argument (no global
or op-level TF seed is involved):

  * the order of the examples: epoch `e` is the permutation
    `stateless_shuffle(range(N), fold_in(seed_order, e))` of the whole split;
  * the dequantization noise and the horizontal flip of the example at
    position `i` of the stream: `fold_in(seed_noise, i)`.

So a run is reproducible, the test split gives the same noise for every batch
size, and `tf.train.Checkpoint(iterator=iter(dataset))` saves and restores the
exact position in the stream (its state is a few counters and the prefetched
batches, not a shuffle buffer).

Images are decoded once into memory as `uint8` (cifar10: 150 MB, mnist: 47 MB,
celeb_a at 32x32: 500 MB, at 64x64: 2 GB), which is what makes the whole-split
permutation possible.

Datasets that are not on disk: see `make_dataset`'s `download` argument.
"""

import functools
import queue
import threading
import urllib.error
import urllib.request

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_realnvp.dequantization import dequantize

TOY_DATASETS = ('moons', 'circles', 'checkerboard', 'spirals', '8gaussians')
IMAGE_DATASETS = ('cifar10', 'celeb_a', 'mnist')
SPLITS = ('train', 'test')

# The toy splits: (number of points, NumPy seed of the draw). They are fixed,
# so every run trains and is evaluated on the same points whatever its seed:
# split S is `sample_toy(name, *TOY_SPLITS[S])`.
TOY_SPLITS = {'train': (100_000, 0), 'test': (10_000, 1)}

# Standard deviation of the isotropic Gaussian noise around the noiseless
# toy shapes (see `sample_toy`).
TOY_NOISE_STD = {'moons': 0.1, 'circles': 0.1, 'spirals': 0.1,
                 '8gaussians': 0.5, 'checkerboard': 0.}
EIGHT_GAUSSIANS_RADIUS = 4.

_IMAGE_SHAPES = {'cifar10': (32, 32, 3), 'mnist': (28, 28, 1)}
# CelebA images are 218x178 (height x width); the customary crop is the
# central 148x148 square (Dinh et al. 2017, Sec. 4.1; Larsen et al. 2016).
CELEB_A_CROP = 148

# Before downloading, an HTTPS request to tfds's storage bucket must get an
# answer within the time limit: offline, tfds retries for minutes before it
# gives up.
CONNECTIVITY_PROBE_URL = 'https://storage.googleapis.com/tfds-data/'
CONNECTIVITY_TIMEOUT_S = 5.


class DatasetUnavailableError(RuntimeError):
  """A TFDS dataset is not on disk and could not be downloaded."""


# 2-D toy densities.


def _unit_circle(angles):
  return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def _moons(rng, num_samples):
  t = rng.uniform(0., np.pi, num_samples)
  lower = rng.random(num_samples) < 0.5
  moon = np.where(lower[:, None], [1., 0.5] - _unit_circle(t), _unit_circle(t))
  return 2. * (moon - [0.5, 0.25])


def _circles(rng, num_samples):
  radius = np.where(rng.random(num_samples) < 0.5, 3., 1.5)
  return radius[:, None] * _unit_circle(rng.uniform(0., 2 * np.pi, num_samples))


def _spirals(rng, num_samples):
  phi = 3 * np.pi * np.sqrt(rng.random(num_samples))
  sign = np.where(rng.random(num_samples) < 0.5, 1., -1.)
  radius = sign * 4. * phi / (3 * np.pi)
  return radius[:, None] * _unit_circle(phi)


def _checkerboard(rng, num_samples):
  column = rng.integers(0, 4, num_samples)
  row = 2 * rng.integers(0, 2, num_samples) + column % 2
  cells = np.stack([column, row], axis=-1)
  return -4. + 2. * (cells + rng.random((num_samples, 2)))


def eight_gaussians_means():
  """The 8 means `4 (cos(k pi/4), sin(k pi/4))`, `k = 0..7`, shape `[8, 2]`."""
  return EIGHT_GAUSSIANS_RADIUS * _unit_circle(np.arange(8) * np.pi / 4)


def _eight_gaussians(rng, num_samples):
  return eight_gaussians_means()[rng.integers(0, 8, num_samples)]


_TOY_SHAPES = {'moons': _moons, 'circles': _circles, 'spirals': _spirals,
               'checkerboard': _checkerboard, '8gaussians': _eight_gaussians}


def sample_toy(name, num_samples, seed):
  """Draws `num_samples` points of the 2-D toy density `name`.

  Each point is `x = c + sigma * eps`, `eps ~ N(0, I_2)`, with `c` drawn from
  the noiseless shape below and `sigma = TOY_NOISE_STD[name]`:

  * `moons` (sigma 0.1): two interleaved half circles, as in scikit-learn's
    `make_moons`, scaled by 2 and centred. With `t ~ U[0, pi)` and a fair
    coin, `c = 2 ((cos t, sin t) - (1/2, 1/4))` (upper moon: centre
    (-1, -1/2), radius 2) or `c = 2 ((1 - cos t, 1/2 - sin t) - (1/2, 1/4))`
    (lower moon: centre (1, 1/2), radius 2).
  * `circles` (sigma 0.1): two concentric circles about the origin, radius 3
    or 1.5 by a fair coin, angle `theta ~ U[0, 2 pi)`.
  * `spirals` (sigma 0.1): two interleaved spiral arms, `c = +-s(phi)` by a
    fair coin with `s(phi) = (4 phi / (3 pi)) (cos phi, sin phi)`,
    `phi = 3 pi sqrt(u)`, `u ~ U[0, 1)` (1.5 turns out to radius 4; the square
    root spreads the points evenly along the arms).
  * `checkerboard` (no noise): uniform on the 8 black squares of a 4x4 board
    on `[-4, 4)^2`; square `(i, j)` is `[-4 + 2i, -2 + 2i) x [-4 + 2j, -2 + 2j)`,
    black when `i + j` is even. Density 1/32 there, 0 elsewhere.
  * `8gaussians` (sigma 0.5): equal mixture of 8 isotropic Gaussians centred
    at `4 (cos(k pi/4), sin(k pi/4))`, `k = 0..7`; exact density:
    `toy_log_prob_8gaussians`.

  Args:
    name: one of `TOY_DATASETS`.
    num_samples: number of points.
    seed: NumPy seed (anything `np.random.default_rng` takes); the points are
      a deterministic function of it.

  Returns:
    float32 array `[num_samples, 2]`.
  """
  _check_name(name, TOY_DATASETS)
  rng = np.random.default_rng(seed)
  points = _TOY_SHAPES[name](rng, num_samples)
  if TOY_NOISE_STD[name]:
    points = points + TOY_NOISE_STD[name] * rng.standard_normal(points.shape)
  return points.astype(np.float32)


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


# Shapes and sizes.


def _check_name(name, names):
  if name not in names:
    raise ValueError(f'Unknown dataset {name!r}; expected one of {names}.')


def _check_split(split):
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')


def event_shape(name, image_size=32):
  """Shape of one example of `name`; `image_size` matters for celeb_a only."""
  _check_name(name, TOY_DATASETS + IMAGE_DATASETS)
  if name in TOY_DATASETS:
    return (2,)
  if name == 'celeb_a':
    return (image_size, image_size, 3)
  return _IMAGE_SHAPES[name]


def num_examples(name, split, data_dir=None, *, download=True):
  """Number of examples in `split` ('train' or 'test') of `name`.

  Raises:
    DatasetUnavailableError: as `make_dataset`.
  """
  _check_name(name, TOY_DATASETS + IMAGE_DATASETS)
  _check_split(split)
  if name in TOY_DATASETS:
    return TOY_SPLITS[split][0]
  return int(_tfds_split(name, split, data_dir, download).cardinality())


# TFDS images.


def reachable(url, timeout_s):
  """Whether an HTTP(S) request to `url` gets any answer within `timeout_s`.

  Proxies come from the environment, as for tfds's downloads. The request runs
  in a daemon thread, so that the name lookup, which `timeout` does not
  bound, is within the limit too.
  """
  outcome = queue.Queue()

  def request():
    try:
      urllib.request.urlopen(
          urllib.request.Request(url, method='HEAD'), timeout=timeout_s).close()
      outcome.put(True)
    except urllib.error.HTTPError:  # An answer, if not a welcome one.
      outcome.put(True)
    except Exception:  # pylint: disable=broad-except
      outcome.put(False)

  threading.Thread(target=request, daemon=True).start()
  try:
    return outcome.get(timeout=timeout_s)
  except queue.Empty:
    return False


def _unavailable(builder, problem):
  name = builder.name
  return DatasetUnavailableError(
      f"The tensorflow-datasets dataset '{name}' is not prepared in "
      f'{builder.data_dir} and could not be downloaded: {problem}.\n'
      'To provide it, either\n'
      f"  * pass --data_dir=DIR (data_dir=DIR) where DIR holds a prepared "
      f"'{name}' (DIR/{name}/{builder.version}/), or\n"
      f'  * on a machine with internet run `tfds build {name} --data_dir=DIR` '
      f'and copy DIR/{name} into the data directory of this machine.')


def _download(builder):
  """`builder.download_and_prepare()`, or a `DatasetUnavailableError` at once."""
  if not reachable(CONNECTIVITY_PROBE_URL, CONNECTIVITY_TIMEOUT_S):
    raise _unavailable(
        builder, f'no answer from {CONNECTIVITY_PROBE_URL} within '
        f'{CONNECTIVITY_TIMEOUT_S:g} s (offline?)')
  logging.info('Downloading and preparing %s in %s.', builder.name,
               builder.data_dir)
  try:
    builder.download_and_prepare()
  except Exception as error:  # pylint: disable=broad-except
    raise _unavailable(
        builder, f'the download failed with {type(error).__name__}: {error}'
    ) from error


def _tfds_split(name, split, data_dir, download):
  """The TFDS split as a dataset of `{'image': uint8 [H, W, C]}`."""
  builder = tfds.builder(name, data_dir=data_dir)
  read = functools.partial(
      builder.as_dataset, split=split,
      decoders=tfds.decode.PartialDecoding({'image': True}))
  try:
    return read()
  except AssertionError:  # How tfds says "could not find data in data_dir".
    if builder.is_prepared():
      raise
  if not download:
    raise _unavailable(builder, 'downloading is off (download=False)')
  _download(builder)
  return read()


def _center_crop_and_resize(image, size):
  """The central `CELEB_A_CROP` square of `image`, resized to `size` x `size`.

  Bilinear resizing with an anti-aliasing filter (area-like when shrinking),
  rounded back to `uint8`.
  """
  crop = tf.image.resize_with_crop_or_pad(image, CELEB_A_CROP, CELEB_A_CROP)
  resized = tf.image.resize(crop, (size, size), antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0., 255.), tf.uint8)


def _load_images(name, split, data_dir, image_size, download):
  """All images of the split as one `uint8` array `[N, *event_shape]`."""
  if name == 'celeb_a':
    preprocess = functools.partial(_center_crop_and_resize, size=image_size)
  else:
    preprocess = tf.identity
  images = _tfds_split(name, split, data_dir, download).map(
      lambda example: preprocess(example['image']),
      num_parallel_calls=tf.data.AUTOTUNE).batch(1024)
  images = np.concatenate(list(images.as_numpy_iterator()))
  logging.info('Loaded %d %s %s images into memory (%.0f MB).', len(images),
               name, split, images.nbytes / 2**20)
  return images


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


def make_dataset(name, split, batch_size, seed, *, data_dir=None,
                 image_size=32, random_flip=False, shuffle=True, repeat=True,
                 drop_remainder=True, download=True):
  """Batches of `name` for `flow.log_prob`: float32 `[batch, *event_shape]`.

  2-D toys: the fixed points of `TOY_SPLITS[split]` (see `sample_toy`).
  Images (`IMAGE_DATASETS`, through tensorflow-datasets): `uint8` pixels plus
  `U[0, 1)` dequantization noise, so values in `[0, 256)`; cifar10 32x32x3,
  mnist 28x28x1, celeb_a the central 148x148 crop of the 218x178 photo
  resized to `image_size` x `image_size` x 3 and rounded to `uint8`.

  The order (a new permutation of the whole split every epoch when
  `shuffle`), the noise and the flips are stateless functions of `seed` and
  of the position in the stream; see the module docstring. With
  `shuffle=False` the examples come in the split's order, and the noise of
  example `i` of a non-repeated split does not depend on `batch_size`.

  A TFDS dataset that is not prepared under `data_dir` is downloaded and
  prepared there when `download` is true and a request to
  `CONNECTIVITY_PROBE_URL` is answered within `CONNECTIVITY_TIMEOUT_S`;
  otherwise, or when the download fails, `DatasetUnavailableError` is raised
  at once, naming the dataset, the directory looked in and how to provide it.
  (Offline, tfds's own download retries for minutes before it fails; the
  probe avoids that wait.)

  Args:
    name: one of `TOY_DATASETS + IMAGE_DATASETS`.
    split: 'train' or 'test'.
    batch_size: examples per batch.
    seed: int; fixes the order, the noise and the flips.
    data_dir: tensorflow-datasets data directory (default: tfds's,
      `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
    image_size: side of the celeb_a images; ignored otherwise.
    random_flip: images only: mirror each example left-right with
      probability 1/2 (training augmentation).
    shuffle: permute the examples (every epoch anew).
    repeat: repeat the split forever.
    drop_remainder: drop a last, smaller batch (gives a static batch size).
    download: allow tfds to download a missing dataset.

  Returns:
    A `tf.data.Dataset` of float32 tensors `[batch_size, *event_shape]`.

  Raises:
    ValueError: for an unknown dataset or split, or `random_flip` for a toy.
    DatasetUnavailableError: see above.
  """
  _check_name(name, TOY_DATASETS + IMAGE_DATASETS)
  _check_split(split)
  if random_flip and name in TOY_DATASETS:
    raise ValueError(f'random_flip is for images; {name!r} is a 2-D toy.')
  base_seed = tf.constant(divmod(seed, 2**31), tf.int32)
  if name in TOY_DATASETS:
    examples = sample_toy(name, *TOY_SPLITS[split])
  else:
    examples = _load_images(name, split, data_dir, image_size, download)
  with tf.device('/cpu:0'):
    examples = tf.constant(examples)
  order = _example_order(len(examples), _fold_in(base_seed, 0), shuffle,
                         repeat)
  if name in TOY_DATASETS:
    dataset = order.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda indices: tf.gather(examples, indices))
  else:
    noise_seed = _fold_in(base_seed, 1)
    dataset = order.enumerate().map(
        lambda position, index: _dequantize_and_flip(
            tf.gather(examples, index), _fold_in(noise_seed, position),
            random_flip),
        num_parallel_calls=tf.data.AUTOTUNE).batch(
            batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)
