"""Which source a dataset name means: `describe(name)`, the one place."""

from tf_realnvp.data import folder
from tf_realnvp.data import npz
from tf_realnvp.data import sources
from tf_realnvp.data import toys


def describe(name, image_size=None, channels=None, data_dir=None, *,
             download=True):
  """The `Source` of `name`: a 2-D toy, a TFDS image dataset (`cifar10`,
  `downsampled_imagenet/64x64`, ...), `folder:PATH` or `npz:FILE`. Reads no
  images.

  `--dataset` names a 2-D toy (`toys`), a tensorflow-datasets image dataset with
  its config, e.g. `downsampled_imagenet/64x64` (`tfds_source`), a folder of
  PNG/JPEG files (`folder:PATH`, `folder`) or `uint8` arrays in a NumPy file
  (`npz:FILE`, `npz`). `describe` reads no images (a TFDS builder defines its
  features in code, a folder is listed and its files' headers read, a `.npz`
  file's array headers are read) and returns a `sources.Source`.
  `experiment.resolve` describes the dataset once per run and hands the
  `Source` on: the step count, the train and test streams (`pipeline`) and
  evaluation use it, and nothing opens the dataset again.

  Args:
    image_size: side of resized images (`Source.resizes`; default: the
      source's).
    channels: folders: 1 or 3, converting images that have the other count.
    data_dir: tensorflow-datasets data directory (default: tfds's).
    download: allow tfds to download a missing dataset when a split is read.

  Raises:
    ValueError: `name` is no toy or TFDS image dataset, or a folder or file
      that does not exist, or `channels` is not 1 or 3.
    DataError: the folder holds no images, or the .npz file no usable arrays.
  """
  if channels not in (None, 1, 3):
    raise ValueError(f'channels must be 1 or 3, got {channels}.')
  if name in toys.TOY_DATASETS:
    return toys.ToySource(name)
  if name.startswith(sources.FOLDER_PREFIX):
    return folder.FolderSource(name, image_size, channels)
  if name.startswith(sources.NPZ_PREFIX):
    return npz.NpzSource(name)
  # Imported for TFDS names only: tensorflow-datasets adds about half a
  # second to every import of the package, 2-D runs and library use included.
  from tf_realnvp.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.TfdsSource(name, image_size, data_dir, download)
