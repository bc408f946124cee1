"""tensorflow-datasets image datasets by name, with their config."""

import logging as std_logging
import queue
import re
import threading
import urllib.error
import urllib.request

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_realnvp.data import preprocessing
from tf_realnvp.data import sources

# Before downloading, an HTTPS request to tfds's storage bucket must get an
# answer within the time limit: offline, tfds retries for minutes before it
# gives up.
CONNECTIVITY_PROBE_URL = 'https://storage.googleapis.com/tfds-data/'
CONNECTIVITY_TIMEOUT_S = 5.


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


def _kind(builder):
  """How a TFDS dataset's images are preprocessed (`preprocessing`)."""
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
  return sources.DatasetUnavailableError(
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


def _is_prepared(builder):
  """`builder.is_prepared()`, the absl warnings it logs passed on as INFO
  (shown from `-v` on); other threads' records are left as they are.

  Whenever the answer is no, tfds warns that the folder "has no
  dataset_info.json"; the `DatasetUnavailableError` that follows says what
  to do.
  """
  absl_logger, thread = logging.get_absl_logger(), threading.get_ident()

  def as_info(record):
    if record.thread == thread and record.levelno == std_logging.WARNING:
      record.levelno, record.levelname = std_logging.INFO, 'INFO'
    return absl_logger.isEnabledFor(record.levelno)

  absl_logger.addFilter(as_info)
  try:
    return builder.is_prepared()
  finally:
    absl_logger.removeFilter(as_info)


def _prepare(builder, download):
  """Downloads and prepares the dataset of `builder` if it is not on disk."""
  if _is_prepared(builder):
    return
  try:  # tfds's test mocks answer as_dataset, not is_prepared.
    builder.as_dataset(split='train')
    return
  except (AssertionError, KeyError):  # No folder; an empty one (no splits).
    pass
  if not download:
    raise _unavailable(builder, 'downloading is off (download=False)')
  _download(builder)


def _split_name(builder, split):
  """'test' is the dataset's validation split where it has no test split
  (downsampled_imagenet, lsun)."""
  splits = builder.info.splits
  if split == 'test' and 'test' not in splits and 'validation' in splits:
    return 'validation'
  return split


def _random_access(builder):
  """Whether the dataset's files can be read at random (array_record)."""
  formats = (builder.info.available_file_formats()
             if builder.info.file_format else set())
  return bool(set(formats) & set(
      tfds.core.file_adapters.FileFormat.with_random_access()))


class TfdsSource(sources.Source):
  """A tensorflow-datasets image dataset; its builder is made once, here.

  (`cifar10`, `celeb_a`, `downsampled_imagenet/64x64`, `lsun/bedroom`, ...).

  `TfdsSource` makes the dataset's builder once (`tfds.builder`) and keeps it:
  its facts come from the features the builder defines in code; the split
  sizes and the splits come from the same builder once the dataset is on disk.
  A dataset that is not is downloaded and prepared (as array_record) when a
  split is first asked for, after a quick check that tfds's storage answers
  (`reachable`); otherwise a `DatasetUnavailableError` says how to provide it.

  Splits up to `sources.IN_MEMORY_LIMIT_BYTES` are decoded into memory once;
  larger ones stream from their array_record files at random access
  (`builder.as_data_source`). The images are preprocessed as `preprocessing`
  says (the paper's crops and resizing).
  """

  def __init__(self, name, image_size=None, data_dir=None, download=True):
    self.builder = builder = _builder(name, data_dir)
    self.download = download
    self._prepared = False
    self._sizes = {}
    features = builder.info.features
    image = features['image'] if 'image' in features else None
    if not isinstance(image, tfds.features.Image):
      raise ValueError(f"{builder.name} has no 'image' feature: not an image "
                       'dataset.')
    label = _label_feature(builder)
    num_classes = label.num_classes if label is not None else None
    height, width, channels = image.shape
    self.kind = _kind(builder)
    if self.kind == 'as_given':
      super().__init__(name, (height, width, channels), num_classes)
      self.image_size = None
      return
    config = builder.builder_config.name if builder.builder_config else ''
    sized = re.fullmatch(r'(\d+)x\1', config or '')
    default = int(sized.group(1)) if sized else preprocessing.DEFAULT_IMAGE_SIZE
    self.image_size = size = image_size or default
    super().__init__(name, (size, size, channels), num_classes, resizes=True,
                     default_image_size=default)

  def _on_disk(self):
    """The builder, its dataset downloaded and prepared first if need be."""
    if not self._prepared:
      _prepare(self.builder, self.download)
      self._prepared = True
    return self.builder

  def num_examples(self, split):
    sources.check_split(split)
    return self._split_size(_split_name(self._on_disk(), split))

  def _split_size(self, split_name):
    if split_name not in self._sizes:
      splits = self.builder.info.splits
      self._sizes[split_name] = (
          splits[split_name].num_examples if split_name in splits else
          int(self.builder.as_dataset(split=split_name).cardinality()))  # Mocks.
    return self._sizes[split_name]

  def read(self, split, *, stream=None, strict=False):
    del strict  # No file of a prepared dataset is skipped.
    sources.check_split(split)
    builder = self._on_disk()
    preprocess, side, crop = preprocessing.stored_form(self.kind,
                                                       self.image_size)
    stored_shape = ((side, side, self.event_shape[-1]) if side
                    else self.event_shape)
    has_labels = self.num_classes is not None
    decoders = tfds.decode.PartialDecoding(
        {'image': True, **({'label': True} if has_labels else {})})
    split_name = _split_name(builder, split)
    size = self._split_size(split_name)
    if stream is None:
      stream = size * np.prod(stored_shape) > sources.IN_MEMORY_LIMIT_BYTES
    if stream or _random_access(builder):
      examples = _stream(builder, split_name, decoders, preprocess,
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
    images = np.empty((size,) + tuple(stored_shape), np.uint8)
    labels = np.empty(size, np.int32)
    for start, (image, label, _) in zip(
        range(0, size, 1024), examples.batch(1024).as_numpy_iterator()):
      images[start:start + len(image)], labels[start:start + len(label)] = (
          image, label)
    logging.info('Loaded %d %s %s images into memory (%.0f MB).', len(images),
                 self.name, split, images.nbytes / 2**20)
    return sources.Split.in_memory(images, labels, crop)


def _stream(builder, split_name, decoders, preprocess, stored_shape, crop,
            has_labels):
  """A `Split` read at random access from TFDS's array_record files.

  Python reads an example's serialized bytes; TensorFlow parses and decodes
  them, in parallel, as `as_dataset` would.
  """
  try:
    source = builder.as_data_source(
        split=split_name,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  except (NotImplementedError, ValueError) as error:
    name = builder.info.full_name.rsplit('/', 1)[0]
    raise sources.DataError(
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
  return sources.Split(len(source), fetch, stored_shape, crop)
