"""Pictures of a flow: image sample grids and 2-D density plots (PNG), and
`write_samples`, the picture a run draws at each evaluation."""

import functools
import os

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from tf_realnvp import data as data_lib
from tf_realnvp import flows


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


GRID_SAMPLES = 36
DENSITY_SAMPLES = 2000


def sample_seed(seed, step):
  """The stateless seed of the samples drawn at `step`."""
  return tf.constant([seed, step], tf.int32)


def write_samples(flow, experiment, model_dir, step, writer, temperature=1.):
  """Writes `samples/step_N.png`: a 6x6 grid, or a 2-D density plot.

  A class-conditional run draws a row of 6 samples per class (2-D data:
  samples of every class in the class's colour, over the marginal density).

  Samples come from the base Normal scaled by `temperature`; a temperature
  other than 1 is added to the file name (`step_N_t0.7.png`).
  """
  config = experiment.config
  suffix = '' if temperature == 1 else f'_t{temperature:g}'
  path = os.path.join(model_dir, 'samples', f'step_{step}{suffix}.png')
  seed = sample_seed(config.seed, step)
  sampler = flows.with_temperature(flow, temperature)
  num_classes = experiment.data.num_classes if config.conditional else None
  count = GRID_SAMPLES if experiment.data.is_image else DENSITY_SAMPLES
  if num_classes:  # A row of samples per class; 2-D: a colour per class.
    columns = GRID_SAMPLES // 6 if experiment.data.is_image else (
        -(-DENSITY_SAMPLES // num_classes))
    classes = np.repeat(np.arange(num_classes, dtype=np.int32), columns)
    samples = flows.sample(sampler, len(classes), seed, classes)
  else:
    classes = None
    samples = sampler.sample(count, seed=seed)
  if experiment.data.is_image:
    grid = image_grid(samples.numpy(), rows=num_classes or 6)
    save_png(grid, path)
    with writer.as_default(step=step):
      tf.summary.image('samples', grid[None].astype(np.float32) / 255.)
  else:
    data = data_lib.sample_toy(config.dataset, 2000, config.seed + 1)
    density_plot(
        functools.partial(marginal_log_prob, flow, num_classes), samples,
        path, data=data, title=f'{config.dataset}, step {step}',
        classes=classes)
  return path


def marginal_log_prob(flow, num_classes, x):
  """`log p(x)`; for a class-conditional flow the marginal over equally
  likely classes, `logsumexp_k log p(x | k) - log K`."""
  if not num_classes:
    return flow.log_prob(x)
  per_class = tf.stack([flows.log_prob(flow, x, tf.constant(k))
                        for k in range(num_classes)])
  return tf.reduce_logsumexp(per_class, axis=0) - np.log(num_classes)
