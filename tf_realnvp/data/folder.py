"""`folder:PATH`: the images under PATH, its subfolders as classes."""

import concurrent.futures
import functools
import hashlib
import os
import threading

from absl import logging
import numpy as np
import tensorflow as tf

from tf_realnvp.data import preprocessing
from tf_realnvp.data import sources

# A folder's test split: the files whose path (relative to the folder) hashes
# below this share, so adding files moves no other file between splits.
FOLDER_TEST_SHARE = 0.1
FOLDER_EXTENSIONS = ('.png', '.jpg', '.jpeg')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# PNG colour types (IHDR) and the channels TensorFlow decodes them to; a
# palette image decodes to RGB.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC), whose
# segment gives the number of components.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _channel_count(native):
  """1 for grayscale (with or without alpha), 3 for colour."""
  return 1 if native <= 2 else 3


def _list(root):
  """`(paths, classes)`: the image files under `root`, relative to it and
  sorted, and the sorted class subfolders (none without)."""
  paths = sorted(
      os.path.relpath(os.path.join(folder, file), root)
      for folder, _, files in tf.io.gfile.walk(root)
      for file in files if file.lower().endswith(FOLDER_EXTENSIONS))
  if not paths:
    raise sources.DataError(
        f'{root} holds no .png, .jpg or .jpeg files: put the images there (in '
        'one subfolder per class, if they have classes).')
  in_root = [p for p in paths if os.sep not in p]
  classes = sorted({p.split(os.sep)[0] for p in paths if os.sep in p})
  if in_root and classes:
    raise sources.DataError(
        f'{root} holds images both in class subfolders and at its top '
        f'({in_root[0]}, ...): move every image into a class subfolder, or '
        'all out of them.')
  return paths, classes


def _split(paths, classes, split):
  """`(paths, labels)` of a split, in path order; labels index `classes`
  (-1 without them)."""

  def held_out(path):
    digest = hashlib.sha256(path.encode()).digest()
    return int.from_bytes(digest[:8], 'big') / 2**64 < FOLDER_TEST_SHARE

  paths = [p for p in paths if held_out(p) == (split == 'test')]
  return paths, _labels(paths, classes)


def _labels(paths, classes):
  """The class of each path, an index into `classes` (-1 without them)."""
  return [classes.index(p.split(os.sep)[0]) if classes else -1 for p in paths]


def folder_split(root, split):
  """`(paths, labels)` of a folder's split, paths relative to `root`, sorted;
  labels index the sorted class subfolders (-1 without them)."""
  return _split(*_list(root), split)


def _header_channels(path):
  """The channel count a PNG or JPEG file's header gives (`_channel_count`),
  read without decoding the image; None if the header says nothing."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    head = f.read(26)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b'IHDR':
      native = _PNG_CHANNELS.get(head[25])
      return native and _channel_count(native)
    if head[:2] != b'\xff\xd8':
      return None
    f.seek(2)
    while True:  # The segments up to the frame header.
      marker = f.read(4)
      if len(marker) < 4 or marker[0] != 0xFF:
        return None
      if marker[1] == 0xFF:  # A fill byte before the marker.
        f.seek(-3, 1)
        continue
      if marker[1] in _JPEG_FRAMES:
        frame = f.read(6)  # Precision, height, width, components.
        return _channel_count(frame[5]) if len(frame) == 6 else None
      f.seek(int.from_bytes(marker[2:], 'big') - 2, 1)


def _decode(path):
  """The image in the file `path` with its own channels, or None."""
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      contents = f.read()
    return tf.io.decode_image(contents, expand_animations=False).numpy()
  except (tf.errors.OpError, OSError) as error:
    logging.debug('Cannot read %s: %s', path, error)
    return None


def _native_channels(path):
  """1 or 3, from the file's header, else from its decoded image; None for a
  file that cannot be read."""
  try:
    channels = _header_channels(path)
  except (tf.errors.OpError, OSError):
    channels = None
  if channels is None:
    image = _decode(path)
    channels = None if image is None else _channel_count(image.shape[-1])
  return channels


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


class FolderSource(sources.Source):
  """`folder:PATH`: PNG/JPEG files, first-level subfolders as classes.

  subfolders as classes (or none).

  The test split is the files whose path (relative to the folder) hashes into
  the held-out share, so adding files never moves a file between splits. Each
  image's largest central square is resized to `image_size`
  (`preprocessing`). Without `channels` a folder of grayscale images stays one
  channel; one that holds any colour image is RGB, its grayscale images
  converted (losslessly: each channel the gray value), with one logged line
  giving their count.

  Splits up to `sources.IN_MEMORY_LIMIT_BYTES` are decoded into memory once;
  larger ones stream, each file read as the stream asks for it. Unreadable
  files are skipped, each logged once with the running count (with `strict`: a
  `DataError`).
  """

  def __init__(self, name, image_size=None, channels=None):
    self.root = root = name[len(sources.FOLDER_PREFIX):]
    if not tf.io.gfile.isdir(root):
      raise ValueError(f'no such folder: {root}')
    self.paths, self.classes = _list(root)
    self.image_size = size = image_size or preprocessing.DEFAULT_IMAGE_SIZE
    self.channels = channels or self._channels_of_the_files()
    super().__init__(name, (size, size, self.channels),
                     len(self.classes) or None, resizes=True,
                     default_image_size=preprocessing.DEFAULT_IMAGE_SIZE,
                     is_folder=True, path=root)

  def _channels_of_the_files(self):
    """3 if any file holds a colour image, else 1; logs how many grayscale
    images that converts.

    The count comes from every file's header (a PNG's first 26 bytes, a
    JPEG's segment headers up to its frame header), read in parallel, not
    from decoding the images: the event shape must be known before any
    split is read, and a streamed folder decodes each image only when the
    stream reaches it. Only a file whose header says nothing is decoded here.
    """
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      counts = list(pool.map(_native_channels, (
          os.path.join(self.root, path) for path in self.paths)))
    grayscale, colour = counts.count(1), counts.count(3)
    if not grayscale + colour:
      raise sources.DataError(
          f'None of the {len(self.paths)} image files in {self.root} could be '
          'read: are they PNG or JPEG?')
    if grayscale and colour:
      logging.warning(
          '%s holds colour images: its %d grayscale image%s converted to '
          'RGB (--channels=1 makes every image grayscale).', self.root,
          grayscale, ' is' if grayscale == 1 else 's are')
    return 3 if colour else 1

  def num_examples(self, split):
    sources.check_split(split)
    return len(_split(self.paths, self.classes, split)[0])

  def _load(self, path, skipped, strict):
    """The file's image, central square resized to `image_size`, with the
    folder's channels; None if unreadable (`skipped` logs and counts it), or
    `DataError` when `strict`."""
    full_path = os.path.join(self.root, path)
    image = _decode(full_path)
    if image is None:
      if strict:
        raise sources.DataError(
            f'{full_path} is not a readable PNG or JPEG image '
            '(--strict_data): remove or replace it.')
      skipped.add(full_path, 'not a readable PNG or JPEG image')
      return None
    size = self.image_size
    if min(image.shape[:2]) < size:
      raise sources.DataError(
          f'{full_path} is {image.shape[0]}x{image.shape[1]}, smaller than '
          f'--image_size={size}: choose a smaller --image_size or remove the '
          'small images.')
    native = _channel_count(image.shape[-1])
    image = tf.constant(image[..., :3] if native == 3 else image[..., :1])
    if native != self.channels:
      image = (tf.image.grayscale_to_rgb(image) if self.channels == 3
               else tf.image.rgb_to_grayscale(image))
    return preprocessing.square_resized(image, size).numpy()

  def read(self, split, *, stream=None, strict=False):
    sources.check_split(split)
    paths, labels = _split(self.paths, self.classes, split)
    if not paths:
      raise sources.DataError(
          f'The {split} split of {self.root} is empty ({len(self.paths)} '
          f'files, {FOLDER_TEST_SHARE:.0%} held out for testing by a hash of '
          'their paths): add images.')
    stored_shape = self.event_shape
    if stream is None:
      stream = (len(paths) * np.prod(stored_shape)
                > sources.IN_MEMORY_LIMIT_BYTES)
    skipped = _Skipped()
    load = functools.partial(self._load, skipped=skipped, strict=strict)
    if stream and not strict:
      return self._stream(paths, labels, load, skipped)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
      images = list(pool.map(load, paths))
    kept = [i for i, image in enumerate(images) if image is not None]
    if not kept:
      raise sources.DataError(
          f'None of the {len(paths)} {split} images in {self.root} could be '
          'read: are they PNG or JPEG?')
    if len(kept) < len(paths):
      logging.warning('%s: skipped %d unreadable of %d %s image files.',
                      self.root, len(paths) - len(kept), len(paths), split)
    if stream:  # Checked whole (strict); now read as the stream asks.
      return self._stream(paths, labels, load, skipped)
    return sources.Split.in_memory(np.stack([images[i] for i in kept]),
                                   np.array([labels[i] for i in kept]))

  def read_every_file(self):
    """Every file of the folder, both splits, in the order of `self.paths`,
    as a streamed `Split`: example `i` is `self.paths[i]`, its `ok` false
    for a file that cannot be read or is too small (skipped and logged, with
    one running count for the whole folder). For scoring a folder whole."""
    skipped = _Skipped()
    load = functools.partial(self._load, skipped=skipped, strict=False)
    return self._stream(self.paths, _labels(self.paths, self.classes), load,
                        skipped)

  def _stream(self, paths, labels, load, skipped):
    """A `Split` decoded from the files as the stream asks for them. An
    image found too small only now is skipped and counted too
    (`--strict_data` finds it before training)."""
    stored_shape = self.event_shape

    def read_one(index):
      try:
        image = load(paths[index])
      except sources.DataError as error:
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

    return sources.Split(len(paths), fetch, stored_shape)
