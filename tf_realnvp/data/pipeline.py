"""The stream: batches of a `Source`'s split for `flow.log_prob`."""

import tensorflow as tf

from tf_realnvp.data import catalog
from tf_realnvp.data import preprocessing
from tf_realnvp.data import sources


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
  return preprocessing.dequantize(image, tf.cast(noise_seed, tf.int32))


def _crop(image, side, seed, random_crop):
  """A random (`random_crop`) or the central `side` x `side` crop."""
  if random_crop:
    return tf.image.stateless_random_crop(
        image, (side, side, image.shape[-1]), seed)
  return preprocessing.central_square(image, side)


def make_dataset(name, split, batch_size, seed, *, data_dir=None,
                 image_size=None, channels=None, download=True, **options):
  """`batches` of the dataset `name`, described first (`catalog.describe`).

  2-D toys: the fixed points of `TOY_SPLITS[split]` (see `sample_toy`).
  Images (a TFDS dataset by name, `folder:PATH`, `npz:FILE`): `uint8`
  pixels, preprocessed as `preprocessing` says, plus `U[0, 1)`
  dequantization noise, so values in `[0, 256)`.

  A TFDS dataset that is not prepared under `data_dir` is downloaded and
  prepared there when `download` is true and a request to
  `tfds_source.CONNECTIVITY_PROBE_URL` is answered within
  `tfds_source.CONNECTIVITY_TIMEOUT_S`; otherwise, or when the download
  fails, `DatasetUnavailableError` is raised at once, naming the dataset, the
  directory looked in and how to provide it. (Offline, tfds's own download
  retries for minutes before it fails; the probe avoids that wait.)

  Args:
    name: a 2-D toy (`TOY_DATASETS`) or an image source (see
      `catalog.describe`).
    split: 'train' or 'test' (a TFDS dataset without a test split: its
      validation split).
    batch_size: examples per batch.
    seed: int; fixes the order, the noise, the flips and the crops.
    data_dir: tensorflow-datasets data directory (default: tfds's,
      `~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
    image_size: side of resized images (`Source.resizes`; default: the
      source's).
    channels: folders: 1 or 3, converting images that have the other count.
    download: allow tfds to download a missing dataset.
    **options: those of `batches`.

  Raises:
    ValueError: for an unknown dataset or split, and as `batches`.
    DatasetUnavailableError: see above.
    DataError: unusable images (`Source.read`).
  """
  sources.check_split(split)
  source = catalog.describe(name, image_size, channels, data_dir,
                            download=download)
  return batches(source, split, batch_size, seed, **options)


def batches(source, split, batch_size, seed, *, random_flip=False,
            random_crop=False, shuffle=True, repeat=True, drop_remainder=True,
            labels=False, stream=None, strict_data=False):
  """Batches of the split `split` of `source` (a `sources.Source`) for
  `flow.log_prob`: float32 `[batch, *event_shape]`.

  The order (a new permutation of the whole split every epoch when
  `shuffle`), the noise, the flips and the crops are stateless functions of
  `seed` and of the position in the stream; see below. With
  `shuffle=False` the examples come in the split's order, and the noise of
  example `i` of a non-repeated split does not depend on `batch_size`.
  Unreadable files of a folder are dropped from the stream (counted and
  logged), unless `strict_data`.

  `batches(source, ...)` (and `make_dataset(name, ...)`, which describes the
  dataset first) yields float32 batches `[batch, *source.event_shape]` that
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
  them (`Source.read`); both give the same batches for the same seed.

  Datasets that are not on disk: see `make_dataset`'s `download` argument.

  Args:
    source: the dataset (`catalog.describe`).
    split: 'train' or 'test'.
    batch_size: examples per batch.
    seed: int; fixes the order, the noise, the flips and the crops.
    random_flip: images only: mirror each example left-right with
      probability 1/2 (training augmentation).
    random_crop: LSUN: random crops (training) instead of the central one.
    shuffle: permute the examples (every epoch anew).
    repeat: repeat the split forever.
    drop_remainder: drop a last, smaller batch (gives a static batch size).
    labels: yield `(x, label)` pairs, label int32 `[batch]`; the `x` are the
      same as without labels.
    stream: read images from disk as the stream needs them (True) or hold
      the split in memory (False); None: by size (`Source.read`).
    strict_data: stop at an unreadable image file instead of skipping it.

  Returns:
    A `tf.data.Dataset` of float32 tensors `[batch_size, *event_shape]`, or
    of `(x, label)` pairs.

  Raises:
    ValueError: for an unknown split, `random_flip` for a toy, or `labels`
      for a dataset without labels.
    DatasetUnavailableError, DataError: as `Source.read`.
  """
  sources.check_split(split)
  if random_flip and not source.is_image:
    raise ValueError(
        f'random_flip is for images; {source.name!r} is a 2-D toy.')
  if labels and source.num_classes is None:
    raise ValueError(f'{source.name} has no labels.')
  return split_batches(
      source.read(split, stream=stream, strict=strict_data), batch_size,
      seed, random_flip=random_flip, random_crop=random_crop,
      shuffle=shuffle, repeat=repeat, drop_remainder=drop_remainder,
      labels=labels)


def split_batches(examples, batch_size, seed, *, random_flip=False,
                  random_crop=False, shuffle=True, repeat=True,
                  drop_remainder=True, labels=False, indices=False):
  """`batches` of a split already read (a `sources.Split`: images when its
  examples are `[H, W, C]`, else points), the same for the same arguments.

  With `indices`, `(index, x)` pairs: each example's index into the split
  (for scoring: which examples were readable).
  """
  base_seed = tf.constant(divmod(seed, 2**31), tf.int32)
  order = _example_order(examples.size, _fold_in(base_seed, 0), shuffle,
                         repeat)

  def output(index, x, label):
    x = (x, label) if labels else x
    return (index, x) if indices else x

  if len(examples.stored_shape) != 3:  # Points, gathered a batch at a time.
    dataset = order.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda index: output(index, *examples.fetch(index)[:2]))
    return dataset.prefetch(tf.data.AUTOTUNE)
  noise_seed, crop_seed = _fold_in(base_seed, 1), _fold_in(base_seed, 2)

  def example(position, index):
    image, label, ok = examples.fetch(index)
    if examples.crop:
      image = _crop(image, examples.crop, _fold_in(crop_seed, position),
                    random_crop)
    x = _dequantize_and_flip(image, _fold_in(noise_seed, position),
                             random_flip)
    return index, x, label, ok

  dataset = order.enumerate().map(
      example, num_parallel_calls=tf.data.AUTOTUNE).filter(
          lambda index, x, label, ok: ok).map(
              lambda index, x, label, ok: output(index, x, label)).batch(
                  batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)
