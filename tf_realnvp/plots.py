"""Pictures of a flow: image sample grids and 2-D density plots (PNG)."""

import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf


def image_grid(images, rows=6):
  """Tiles `[rows * cols, H, W, C]` intensities in [0, 256) into one uint8 image.

  Samples of the logit-preprocessed flow can fall slightly outside [0, 256);
  they are clipped to the displayable range.
  """
  images = np.clip(np.floor(np.asarray(images)), 0, 255).astype(np.uint8)
  count, height, width, channels = images.shape
  cols = -(-count // rows)
  padded = np.zeros((rows * cols, height, width, channels), np.uint8)
  padded[:count] = images
  grid = padded.reshape(rows, cols, height, width, channels)
  return grid.transpose(0, 2, 1, 3, 4).reshape(
      rows * height, cols * width, channels)


def save_png(image, path):
  """Writes a uint8 `[H, W, C]` image atomically (temporary file, then rename)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = path + '.tmp'
  tf.io.write_file(tmp, tf.io.encode_png(image))
  os.replace(tmp, path)


def density_plot(log_prob_fn, samples, path, data=None, extent=4.5,
                 resolution=200, title=None, classes=None):
  """Saves a heat-map of `exp(log_prob_fn(points))` next to a sample scatter.

  Args:
    log_prob_fn: maps float32 `[N, 2]` points to `[N]` log-densities.
    samples: `[M, 2]` samples of the flow, shown on the right.
    path: PNG file to write.
    data: optional `[K, 2]` training points, shown under the samples.
    extent: the plots cover `[-extent, extent]^2`.
    resolution: grid points per axis of the heat-map.
    title: optional figure title.
    classes: optional `[M]` class of each sample, which colours it.
  """
  axis = np.linspace(-extent, extent, resolution, dtype=np.float32)
  grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
  log_density = np.asarray(log_prob_fn(grid)).reshape(resolution, resolution)
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
  left.imshow(np.exp(log_density), origin='lower',
              extent=(-extent, extent) * 2, cmap='viridis')
  # E.g. IAF's density inverts its autoregression, which can overflow far
  # from the data: say so rather than draw those points as zero density.
  not_finite = np.mean(~np.isfinite(log_density))
  title_left = 'density'
  if not_finite:
    title_left += f' (white: not finite at {not_finite:.0%} of points)'
  left.set_title(title_left)
  if data is not None:
    right.scatter(data[:, 0], data[:, 1], s=1, c='lightgray', label='data')
  samples = np.asarray(samples)
  if classes is None:
    right.scatter(samples[:, 0], samples[:, 1], s=1, c='tab:blue',
                  label='samples')
  else:
    right.scatter(samples[:, 0], samples[:, 1], s=1, c=classes, cmap='tab10',
                  label='samples (colour: class)')
  right.set_xlim(-extent, extent)
  right.set_ylim(-extent, extent)
  right.set_aspect('equal')
  right.legend(loc='upper right', markerscale=8)
  right.set_title('samples')
  if title:
    fig.suptitle(title)
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=80, bbox_inches='tight')
  plt.close(fig)
  os.replace(tmp, path)
