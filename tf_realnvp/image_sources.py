"""Where 8-bit images come from: a tensorflow-datasets dataset by name (with
its config, e.g. `downsampled_imagenet/64x64`), a folder of PNG/JPEG files
(`folder:PATH`) or `uint8` arrays in a NumPy file (`npz:FILE`).

`describe` gives a source's facts without reading its images: a registered
TFDS builder defines its features in code, a folder is listed (and its first
image decoded), a `.npz` file's array headers are read. `read` gives one split
as `Examples`: its size and a TensorFlow function from an example's index in
the split to its stored `uint8` image and label, gathered from memory or read
from disk at random access. The order, the noise and the crops of the stream
are `input_pipeline`'s.

Preprocessing, applied as the images are stored (Dinh et al. 2017, Sec. 4.1):

  * images of one fixed size (cifar10, mnist, svhn_cropped, ...): as given;
  * celeb_a: the central 148x148 crop, resized to `image_size`;
  * lsun/*: resized so that the short side is `image_size * 96 / 64` (96 for
    64x64 images), keeping its central square; the stream then takes random
    `image_size` crops in training, the central one otherwise;
  * other images of varying size (downsampled_imagenet, a folder): the
    largest central square, resized to `image_size`.

Resizing is bilinear with an anti-aliasing filter, rounded back to `uint8`.

Splits up to `IN_MEMORY_LIMIT_BYTES` are decoded into memory once; larger
ones stream: TFDS datasets from their array_record files at random access
(`builder.as_data_source`), folders from their files. A folder's unreadable
files are skipped, each logged once with the running count (with
`strict`: a `DataError`).
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import os
import queue
import re
import threading
from typing import Callable, Optional, Tuple
import urllib.error
import urllib.request
import zipfile

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

FOLDER_PREFIX = 'folder:'
NPZ_PREFIX = 'npz:'
# The side of resized images when `image_size` is not given, unless a TFDS
# config is named after its size ('64x64').
DEFAULT_IMAGE_SIZE = 32
# CelebA images are 218x178 (height x width); the customary crop is the
# central 148x148 square (Dinh et al. 2017, Sec. 4.1; Larsen et al. 2016).
CELEB_A_CROP = 148
# LSUN: "we downsample the image so that the smallest side is 96 pixels and
# take random crops of 64 x 64" (Dinh et al. 2017, Sec. 4.1).
LSUN_SHORT_SIDE_PER_CROP = 96 / 64
# A folder's test split: the files whose path (relative to the folder) hashes
# below this share, so adding files moves no other file between splits.
FOLDER_TEST_SHARE = 0.1
FOLDER_EXTENSIONS = ('.png', '.jpg', '.jpeg')
# Splits whose stored images take more memory than this stream from disk:
# loading one peaks at about three times its size (BENCHMARKS.md).
IN_MEMORY_LIMIT_BYTES = 2 * 2**30

# Before downloading, an HTTPS request to tfds's storage bucket must get an
# answer within the time limit: offline, tfds retries for minutes before it
# gives up.
CONNECTIVITY_PROBE_URL = 'https://storage.googleapis.com/tfds-data/'
CONNECTIVITY_TIMEOUT_S = 5.


class DatasetUnavailableError(RuntimeError):
  """A TFDS dataset is not on disk and could not be downloaded."""


class DataError(RuntimeError):
  """Data that cannot be used as they are; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Facts:
  """What a run knows about an image source before reading it.

  `event_shape` is the shape the stream yields; `resizes` says whether
  `image_size` applies (the images are cropped and resized to it), and
  `default_image_size` is its value when not given.
  """

  event_shape: Tuple[int, ...]
  num_classes: Optional[int]
  resizes: bool
  default_image_size: Optional[int]
  is_folder: bool = False


@dataclasses.dataclass(frozen=True)
class Examples:
  """One split: `fetch(index)` is `(image, label, ok)` for an int64 index.

  `image` is `uint8` of `stored_shape`, `label` int32 (-1 without labels),
  `ok` false for a file that could not be read (the stream drops it).
  `crop` is the side the stream crops stored images to (LSUN), else None.
  """

  size: int
  fetch: Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
  stored_shape: Tuple[int, int, int]
  crop: Optional[int] = None


def is_image_source(name):
  """Whether `name` is a folder or .npz source (else a TFDS name)."""
  return name.startswith((FOLDER_PREFIX, NPZ_PREFIX))


def describe(name, image_size=None, channels=None, data_dir=None):
  """The `Facts` of the image source `name`, reading no images.

  Raises:
    ValueError: `name` is no TFDS image dataset, or a folder or file that
      does not exist, or `channels` is not 1 or 3.
    DataError: the folder holds no images, or the .npz file no usable arrays.
  """
  if channels not in (None, 1, 3):
    raise ValueError(f'channels must be 1 or 3, got {channels}.')
  if name.startswith(FOLDER_PREFIX):
    return _Folder(name[len(FOLDER_PREFIX):], channels).facts(image_size)
  if name.startswith(NPZ_PREFIX):
    return _npz_facts(name[len(NPZ_PREFIX):])
  return _tfds_facts(_builder(name, data_dir), image_size)


def num_examples(name, split, data_dir=None, *, download=True):
  """Number of examples in `split` of the image source `name` (before any
  unreadable files are dropped)."""
  if name.startswith(FOLDER_PREFIX):
    return len(folder_split(name[len(FOLDER_PREFIX):], split)[0])
  if name.startswith(NPZ_PREFIX):
    shape, _ = _npz_header(name[len(NPZ_PREFIX):], split)
    return shape[0]
  builder = _prepared(_builder(name, data_dir), download)
  return _split_size(builder, _tfds_split_name(builder, split))


def folder_split(root, split):
  """`(paths, labels)` of a folder's split, paths relative to `root`, sorted;
  labels index the sorted class subfolders (-1 without them)."""
  return _Folder(root).split(split)


def read(name, split, *, data_dir=None, image_size=None, channels=None,
         download=True, stream=None, strict=False):
  """The split `split` ('train' or 'test') of `name` as `Examples`.

  Args:
    stream: read examples from disk as the stream asks for them (True), or
      decode the split into memory once (False); None: stream when the
      stored split would take more than `IN_MEMORY_LIMIT_BYTES`.
    strict: stop at the first unreadable image file (`DataError`) instead of
      skipping and counting it; streamed folders are then checked whole
      before the first batch.

  Raises:
    DatasetUnavailableError: a TFDS dataset that is not on disk and cannot
      be downloaded.
    DataError: see `describe`, and for unreadable, too small or mixed
      images, and TFDS splits too large for memory that cannot be streamed.
  """
  if name.startswith(FOLDER_PREFIX):
    folder = _Folder(name[len(FOLDER_PREFIX):], channels)
    return folder.read(split, image_size or DEFAULT_IMAGE_SIZE, stream, strict)
  if name.startswith(NPZ_PREFIX):
    return _npz_read(name[len(NPZ_PREFIX):], split)
  return _tfds_read(name, split, data_dir, image_size, download, stream)


# Preprocessing.


def _to_uint8(images):
  return tf.cast(tf.clip_by_value(tf.round(images), 0., 255.), tf.uint8)


def _resize(image, size):
  return _to_uint8(tf.image.resize(image, size, antialias=True))


def central_square(image, side=None):
  """The central `side` x `side` square of `image` (default: the largest)."""
  shape = tf.shape(image)
  if side is None:
    side = tf.minimum(shape[0], shape[1])
  top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
  return image[top:top + side, left:left + side]


def _square_resized(image, size, crop=None):
  return _resize(central_square(image, crop), (size, size))


def _short_side_resized(image, short_side):
  """`image` resized so its short side is `short_side`; its central square."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = short_side / tf.reduce_min(shape)
  size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), short_side)
  return central_square(_resize(image, size), short_side)


def _stored_form(kind, image_size):
  """`(preprocess, stored side, crop)` for a TFDS image of `kind`."""
  if kind == 'as_given':
    return tf.identity, None, None
  if kind == 'lsun':
    side = round(image_size * LSUN_SHORT_SIDE_PER_CROP)
    return (functools.partial(_short_side_resized, short_side=side), side,
            image_size)
  crop = CELEB_A_CROP if kind == 'celeb_a' else None
  return (functools.partial(_square_resized, size=image_size, crop=crop),
          image_size, None)


def _in_memory(images, labels):
  """`Examples` gathered from the arrays `images` and `labels` (or None)."""
  with tf.device('/cpu:0'):
    images = tf.constant(images)
    labels = tf.constant(np.full(len(images), -1, np.int32) if labels is None
                         else np.asarray(labels, np.int32))
  return Examples(
      len(images), lambda index: (tf.gather(images, index),
                                  tf.gather(labels, index), tf.constant(True)),
      tuple(images.shape[1:]))


# TFDS.


def _builder(name, data_dir):
  try:
    return tfds.builder(name, data_dir=data_dir)
  except Exception as error:  # pylint: disable=broad-except
    # tfds raises DatasetNotFoundError, or ValueError for an unknown config.
    message = str(error).split('\n')[0]
    raise ValueError(
        f'Unknown dataset {name!r} ({message.rstrip(": ")}): name a 2-D toy, '
        'a tensorflow-datasets image dataset (cifar10, celeb_a, '
        'downsampled_imagenet/64x64, lsun/bedroom, ...), folder:PATH or '
        'npz:FILE.') from None


def _tfds_kind(builder):
  """How a TFDS dataset's images are preprocessed (module docstring)."""
  if builder.name == 'celeb_a':
    return 'celeb_a'
  if builder.name == 'lsun':
    return 'lsun'
  if None in builder.info.features['image'].shape[:2]:
    return 'square'
  return 'as_given'


def _label_feature(builder):
  features = builder.info.features
  label = features['label'] if 'label' in features else None
  return label if isinstance(label, tfds.features.ClassLabel) else None


def _tfds_facts(builder, image_size):
  features = builder.info.features
  image = features['image'] if 'image' in features else None
  if not isinstance(image, tfds.features.Image):
    raise ValueError(f"{builder.name} has no 'image' feature: not an image "
                     'dataset.')
  label = _label_feature(builder)
  num_classes = label.num_classes if label is not None else None
  height, width, channels = image.shape
  if _tfds_kind(builder) == 'as_given':
    return Facts((height, width, channels), num_classes, False, None)
  config = builder.builder_config.name if builder.builder_config else ''
  sized = re.fullmatch(r'(\d+)x\1', config or '')
  default = int(sized.group(1)) if sized else DEFAULT_IMAGE_SIZE
  size = image_size or default
  return Facts((size, size, channels), num_classes, True, default)


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
  name = builder.info.full_name.rsplit('/', 1)[0]  # With its config.
  return DatasetUnavailableError(
      f"The tensorflow-datasets dataset '{name}' is not prepared in "
      f'{builder.data_dir} and could not be downloaded: {problem}.\n'
      'To provide it, either\n'
      f"  * pass --data_dir=DIR (data_dir=DIR) where DIR holds a prepared "
      f"'{name}' (DIR/{builder.info.full_name}/), or\n"
      f'  * on a machine with internet run `tfds build {name} '
      '--file_format=array_record --data_dir=DIR` (array_record: a split too '
      'large for memory streams from it) and copy DIR/'
      f'{builder.name} into the data directory of this machine.')


def _download(builder):
  """`builder.download_and_prepare()`, or a `DatasetUnavailableError` at once."""
  if not reachable(CONNECTIVITY_PROBE_URL, CONNECTIVITY_TIMEOUT_S):
    raise _unavailable(
        builder, f'no answer from {CONNECTIVITY_PROBE_URL} within '
        f'{CONNECTIVITY_TIMEOUT_S:g} s (offline?)')
  logging.info('Downloading and preparing %s in %s.', builder.name,
               builder.data_dir)
  try:  # array_record files can be read at random: any split can stream.
    builder.download_and_prepare(file_format='array_record')
  except Exception as error:  # pylint: disable=broad-except
    raise _unavailable(
        builder, f'the download failed with {type(error).__name__}: {error}'
    ) from error


def _prepared(builder, download):
  """`builder`, downloaded and prepared first if it is not on disk."""
  if builder.is_prepared():
    return builder
  try:  # tfds's test mocks answer as_dataset, not is_prepared.
    builder.as_dataset(split='train')
    return builder
  except AssertionError:  # How tfds says "could not find data in data_dir".
    pass
  if not download:
    raise _unavailable(builder, 'downloading is off (download=False)')
  _download(builder)
  return builder


def _tfds_split_name(builder, split):
  """'test' is the dataset's validation split where it has no test split
  (downsampled_imagenet, lsun)."""
  splits = builder.info.splits
  if split == 'test' and 'test' not in splits and 'validation' in splits:
    return 'validation'
  return split


def _split_size(builder, split_name):
  splits = builder.info.splits
  if split_name in splits:
    return splits[split_name].num_examples
  return int(builder.as_dataset(split=split_name).cardinality())  # Mocks.


def _random_access(builder):
  """Whether the dataset's files can be read at random (array_record)."""
  formats = (builder.info.available_file_formats()
             if builder.info.file_format else set())
  return bool(set(formats) & set(
      tfds.core.file_adapters.FileFormat.with_random_access()))


def _tfds_read(name, split, data_dir, image_size, download, stream):
  builder = _prepared(_builder(name, data_dir), download)
  facts = _tfds_facts(builder, image_size)
  preprocess, side, crop = _stored_form(
      _tfds_kind(builder), image_size or facts.default_image_size)
  stored_shape = ((side, side, facts.event_shape[-1]) if side
                  else facts.event_shape)
  has_labels = facts.num_classes is not None
  decoders = tfds.decode.PartialDecoding(
      {'image': True, **({'label': True} if has_labels else {})})
  split_name = _tfds_split_name(builder, split)
  if stream is None:
    stream = (_split_size(builder, split_name) * np.prod(stored_shape)
              > IN_MEMORY_LIMIT_BYTES)
  if stream or _random_access(builder):
    examples = _tfds_stream(builder, split_name, decoders, preprocess,
                            stored_shape, crop, has_labels)
    if stream:
      return examples
    # array_record files have no `as_dataset`: read them once, in order.
    examples = tf.data.Dataset.range(examples.size).map(
        examples.fetch, num_parallel_calls=tf.data.AUTOTUNE)
  else:
    examples = builder.as_dataset(split=split_name, decoders=decoders).map(
        lambda example: (preprocess(example['image']),
                         example['label'] if has_labels else -1, True),
        num_parallel_calls=tf.data.AUTOTUNE)
  # Filled batch by batch: one copy of the split, not two, before TF's.
  size = _split_size(builder, split_name)
  images = np.empty((size,) + tuple(stored_shape), np.uint8)
  labels = np.empty(size, np.int32)
  for start, (image, label, _) in zip(
      range(0, size, 1024), examples.batch(1024).as_numpy_iterator()):
    images[start:start + len(image)], labels[start:start + len(label)] = (
        image, label)
  logging.info('Loaded %d %s %s images into memory (%.0f MB).', len(images),
               name, split, images.nbytes / 2**20)
  return dataclasses.replace(_in_memory(images, labels), crop=crop)


def _tfds_stream(builder, split_name, decoders, preprocess, stored_shape,
                 crop, has_labels):
  """`Examples` read at random access from TFDS's array_record files.

  Python reads an example's serialized bytes; TensorFlow parses and decodes
  them, in parallel, as `as_dataset` would.
  """
  try:
    source = builder.as_data_source(
        split=split_name,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  except (NotImplementedError, ValueError) as error:
    name = builder.info.full_name.rsplit('/', 1)[0]
    raise DataError(
        f'The {split_name} split of {name} is too large to hold in memory and '
        f'its files ({builder.info.file_format.value}) cannot be read at '
        f'random ({str(error).splitlines()[0]}): prepare it as array_record '
        f'with `tfds build {name} --file_format=array_record --data_dir=DIR` '
        'and pass --data_dir=DIR.') from None
  features = decoders.extract_features(builder.info.features)

  def fetch(index):
    serialized = tf.numpy_function(lambda i: source[int(i)], [index],
                                   tf.string, stateful=False)
    example = features.deserialize_example(
        tf.ensure_shape(serialized, []), decoders=decoders.decoders)
    image = tf.ensure_shape(preprocess(example['image']), stored_shape)
    label = tf.cast(example['label'], tf.int32) if has_labels else -1
    return image, label, tf.constant(True)

  logging.info('Streaming %d %s %s images from disk.', len(source),
               builder.name, split_name)
  return Examples(len(source), fetch, stored_shape, crop)


# A folder of image files.


def _channel_count(native):
  """1 for grayscale (with or without alpha), 3 for colour."""
  return 1 if native <= 2 else 3


class _Skipped:
  """Files skipped as unusable; each is logged once, with the running count."""

  def __init__(self):
    self.paths = set()
    self._lock = threading.Lock()

  def add(self, path, reason):
    with self._lock:
      if path in self.paths:  # Streamed: met again every epoch.
        return
      self.paths.add(path)
      count = len(self.paths)
    logging.warning('Skipped %s (%d skipped so far): %s', path, count, reason)


class _Folder:
  """`folder:PATH`: PNG/JPEG files, first-level subfolders as classes."""

  def __init__(self, root, channels=None):
    self.root = root
    self.channels = channels
    if not tf.io.gfile.isdir(root):
      raise ValueError(f'no such folder: {root}')
    self.paths, self.classes = self._list()

  def _list(self):
    paths = sorted(
        os.path.relpath(os.path.join(folder, file), self.root)
        for folder, _, files in tf.io.gfile.walk(self.root)
        for file in files if file.lower().endswith(FOLDER_EXTENSIONS))
    if not paths:
      raise DataError(
          f'{self.root} holds no .png, .jpg or .jpeg files: put the images '
          'there (in one subfolder per class, if they have classes).')
    in_root = [p for p in paths if os.sep not in p]
    classes = sorted({p.split(os.sep)[0] for p in paths if os.sep in p})
    if in_root and classes:
      raise DataError(
          f'{self.root} holds images both in class subfolders and at its '
          f'top ({in_root[0]}, ...): move every image into a class subfolder, '
          'or all out of them.')
    return paths, classes

  def split(self, split):
    """`(paths, labels)` of a split, in path order."""

    def held_out(path):
      digest = hashlib.sha256(path.encode()).digest()
      return int.from_bytes(digest[:8], 'big') / 2**64 < FOLDER_TEST_SHARE

    paths = [p for p in self.paths if held_out(p) == (split == 'test')]
    labels = [self.classes.index(p.split(os.sep)[0]) if self.classes else -1
              for p in paths]
    return paths, labels

  def facts(self, image_size):
    channels = self.channels or self._first_channels()
    size = image_size or DEFAULT_IMAGE_SIZE
    return Facts((size, size, channels), len(self.classes) or None, True,
                 DEFAULT_IMAGE_SIZE, is_folder=True)

  def _first_channels(self):
    """The channel count of the first readable image."""
    for path in self.paths:
      image = self._decode(path)
      if image is not None:
        return _channel_count(image.shape[-1])
    raise DataError(f'None of the {len(self.paths)} image files in '
                    f'{self.root} could be read: are they PNG or JPEG?')

  def _decode(self, path):
    """The image in the file `path` with its own channels, or None."""
    try:
      with tf.io.gfile.GFile(os.path.join(self.root, path), 'rb') as f:
        contents = f.read()
      return tf.io.decode_image(contents, expand_animations=False).numpy()
    except (tf.errors.OpError, OSError) as error:
      logging.debug('Cannot read %s: %s', path, error)
      return None

  def _load(self, path, size, channels, skipped, strict):
    """The file's image, central square resized to `size`; None if unreadable
    (`skipped` logs and counts it), or `DataError` when `strict`."""
    image = self._decode(path)
    full_path = os.path.join(self.root, path)
    if image is None:
      if strict:
        raise DataError(f'{full_path} is not a readable PNG or JPEG image '
                        '(--strict_data): remove or replace it.')
      skipped.add(full_path, 'not a readable PNG or JPEG image')
      return None
    if min(image.shape[:2]) < size:
      raise DataError(
          f'{full_path} is {image.shape[0]}x{image.shape[1]}, smaller than '
          f'--image_size={size}: choose a smaller --image_size or remove the '
          'small images.')
    native = _channel_count(image.shape[-1])
    if self.channels is None and native != channels:
      raise DataError(
          f'{self.root} mixes grayscale and colour images ({full_path} has '
          f'{native} channel(s), the first image {channels}): pass '
          '--channels=3 or --channels=1 to convert them.')
    image = tf.constant(image[..., :3] if native == 3 else image[..., :1])
    if native != channels:
      image = (tf.image.grayscale_to_rgb(image) if channels == 3
               else tf.image.rgb_to_grayscale(image))
    return _square_resized(image, size).numpy()

  def read(self, split, size, stream, strict):
    paths, labels = self.split(split)
    if not paths:
      raise DataError(
          f'The {split} split of {self.root} is empty ({len(self.paths)} '
          f'files, {FOLDER_TEST_SHARE:.0%} held out for testing by a hash of '
          'their paths): add images.')
    channels = self.facts(size).event_shape[-1]
    stored_shape = (size, size, channels)
    if stream is None:
      stream = len(paths) * np.prod(stored_shape) > IN_MEMORY_LIMIT_BYTES
    skipped = _Skipped()
    load = functools.partial(self._load, size=size, channels=channels,
                             skipped=skipped, strict=strict)
    if stream and not strict:
      return self._stream(paths, labels, load, stored_shape, skipped)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      images = list(pool.map(load, paths))
    kept = [i for i, image in enumerate(images) if image is not None]
    if not kept:
      raise DataError(f'None of the {len(paths)} {split} images in '
                      f'{self.root} could be read: are they PNG or JPEG?')
    if len(kept) < len(paths):
      logging.warning('%s: skipped %d unreadable of %d %s image files.',
                      self.root, len(paths) - len(kept), len(paths), split)
    if stream:  # Checked whole (strict); now read as the stream asks.
      return self._stream(paths, labels, load, stored_shape, skipped)
    return _in_memory(np.stack([images[i] for i in kept]),
                      np.array([labels[i] for i in kept]))

  def _stream(self, paths, labels, load, stored_shape, skipped):
    """`Examples` decoded from the files as the stream asks for them. An
    image found too small or of the other channel count only now is skipped
    and counted too (`--strict_data` finds it before training)."""

    def read_one(index):
      try:
        image = load(paths[index])
      except DataError as error:
        skipped.add(os.path.join(self.root, paths[index]), str(error))
        image = None
      ok = image is not None
      return (image if ok else np.zeros(stored_shape, np.uint8),
              np.int32(labels[index]), ok)

    def fetch(index):
      image, label, ok = tf.numpy_function(
          read_one, [index], (tf.uint8, tf.int32, tf.bool), stateful=False)
      return (tf.ensure_shape(image, stored_shape), tf.ensure_shape(label, []),
              tf.ensure_shape(ok, []))

    return Examples(len(paths), fetch, stored_shape)


# uint8 arrays in a .npz file.


def _npz_header(path, split):
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
    raise DataError(
        f'{path} has no {split!r} array ({error}): save the images as '
        "np.savez(FILE, train=uint8 [N, H, W, C] or [N, H, W], test=..., "
        'train_labels=..., test_labels=...) (labels optional).') from None
  if dtype != np.uint8 or len(shape) not in (3, 4):
    raise DataError(f'The {split!r} array of {path} is {dtype} {shape}; '
                    'expected uint8 [N, H, W, C] or [N, H, W] (grayscale).')
  return shape, dtype


def _npz_facts(path):
  shapes = [_npz_header(path, split)[0] for split in ('train', 'test')]
  event_shapes = [tuple(s[1:]) + (1,) * (len(s) == 3) for s in shapes]
  if event_shapes[0] != event_shapes[1]:
    raise DataError(f'The train and test images of {path} differ in shape '
                    f'({event_shapes[0]}, {event_shapes[1]}).')
  with np.load(path) as arrays:
    num_classes = (int(np.max(arrays['train_labels'])) + 1
                   if 'train_labels' in arrays.files else None)
  return Facts(event_shapes[0], num_classes, False, None)


def _npz_read(path, split):
  _npz_facts(path)
  with np.load(path) as arrays:
    images = arrays[split]
    labels = (arrays[f'{split}_labels'] if f'{split}_labels' in arrays.files
              else None)
  if images.ndim == 3:
    images = images[..., None]
  return _in_memory(images, labels)
