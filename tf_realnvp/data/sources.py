"""What a dataset is to a run: the `Source` every source module implements."""

import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

SPLITS = ('train', 'test')
FOLDER_PREFIX = 'folder:'
NPZ_PREFIX = 'npz:'
# Splits whose stored images take more memory than this stream from disk:
# loading one peaks at about three times its size (BENCHMARKS.md).
IN_MEMORY_LIMIT_BYTES = 2 * 2**30


class DatasetUnavailableError(RuntimeError):
  """A TFDS dataset is not on disk and could not be downloaded."""


class DataError(RuntimeError):
  """Data that cannot be used as they are; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: `fetch(index)` is `(example, label, ok)` for an int64 index.

  Images: `example` is `uint8` of `stored_shape`; 2-D toys: float32 points,
  and `fetch` takes a batch of indices too. `label` is int32 (-1 without
  labels), `ok` false for a file that could not be read (the stream drops
  it). `crop` is the side the stream crops stored images to (LSUN), else None.
  """

  size: int
  fetch: Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor, tf.Tensor]]
  stored_shape: Tuple[int, ...]
  crop: Optional[int] = None

  @classmethod
  def in_memory(cls, examples, labels=None, crop=None):
    """A split gathered from the array `examples` and its `labels` (or None)."""
    with tf.device('/cpu:0'):
      examples = tf.constant(examples)
      labels = tf.constant(
          np.full(len(examples), -1, np.int32) if labels is None
          else np.asarray(labels, np.int32))
    return cls(
        len(examples), lambda index: (tf.gather(examples, index),
                                      tf.gather(labels, index),
                                      tf.constant(True)),
        tuple(examples.shape[1:]), crop)


class Source:
  """A dataset as a run knows it before reading it, and its splits' readers.

  A `Source` holds the dataset's facts (event shape, classes, whether
  `image_size` applies), its split sizes and the reader of each split;
  `catalog.describe(name)` makes the one of a run. This module imports none of
  the sources.

  A split (`Source.read`) is a `Split`: its size and a TensorFlow function from
  an example's index to its stored example, gathered from memory or read from
  disk at random access. The order, the noise and the crops of the stream are
  `pipeline`'s.

  Attributes:
    name: the dataset's name, as `--dataset` gives it.
    event_shape: the shape the stream yields: `(2,)` or `(H, W, C)`.
    is_image: whether the examples are images, `(H, W, C)`.
    num_classes: the number of classes of its labels; None without labels.
    resizes: whether `image_size` applies (the images are cropped and
      resized to it); `default_image_size` is its value when not given.
    is_folder: a `folder:` dataset (`channels` applies).
    path: the folder or file a `folder:` or `npz:` dataset reads, else None.
  """

  def __init__(self, name, event_shape, num_classes=None, *, resizes=False,
               default_image_size=None, is_folder=False, path=None):
    self.name = name
    self.event_shape = tuple(event_shape)
    self.is_image = len(self.event_shape) == 3
    self.num_classes = num_classes
    self.resizes = resizes
    self.default_image_size = default_image_size
    self.is_folder = is_folder
    self.path = path

  def num_examples(self, split):
    """The number of examples in `split` ('train' or 'test'), before any
    unreadable files are dropped."""
    raise NotImplementedError

  def read(self, split, *, stream=None, strict=False):
    """The split `split` ('train' or 'test') as a `Split`.

    Args:
      stream: read examples from disk as the stream asks for them (True), or
        decode the split into memory once (False); None: stream when the
        stored split would take more than `IN_MEMORY_LIMIT_BYTES`.
      strict: stop at the first unreadable image file (`DataError`) instead
        of skipping and counting it; streamed folders are then checked whole
        before the first batch.

    Raises:
      DatasetUnavailableError: a TFDS dataset that is not on disk and cannot
        be downloaded.
      DataError: unreadable, too small or unusable images, and TFDS splits
        too large for memory that cannot be streamed.
    """
    raise NotImplementedError

  def __repr__(self):
    return (f'{type(self).__name__}({self.name!r}, event_shape='
            f'{self.event_shape}, num_classes={self.num_classes})')


def check_split(split):
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
