"""Pictures of a flow: samples, 2-D densities, the manifold, scored sets."""

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


def save_figure(fig, path):
  """Writes the Matplotlib figure `fig` atomically and closes it."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=80, bbox_inches='tight')
  plt.close(fig)
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
  save_figure(fig, path)


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

  `write_samples`, the picture a run draws at each evaluation, the paper's
  manifold of latents (`write_manifold`), and the picture of a scored set
  (`score_figure`).
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


MANIFOLD_SIDE = 8
STRIP_IMAGES = 8


def manifold_grid(flow, examples, side=MANIFOLD_SIDE):
  """The manifold of four examples' latents (Dinh et al. 2017, Sec. 5,
  arXiv 1605.08803), decoded into a `side` x `side` uint8 image grid.

      z = cos(phi) (cos(phi') z1 + sin(phi') z2)
        + sin(phi) (cos(phi') z3 + sin(phi') z4),

  `z_k = flow.bijector.inverse(examples[k])`, with `phi` (rows) and `phi'`
  (columns) over `side` even steps of `[0, pi/2]`: the corners are the four
  examples, and the four weights have unit norm (a sphere through them).
  """
  latents = flow.bijector.inverse(examples)
  angles = np.linspace(0., np.pi / 2, side)
  phi, phi_prime = (a.ravel() for a in np.meshgrid(angles, angles,
                                                     indexing='ij'))
  weights = np.stack([np.cos(phi) * np.cos(phi_prime),
                      np.cos(phi) * np.sin(phi_prime),
                      np.sin(phi) * np.cos(phi_prime),
                      np.sin(phi) * np.sin(phi_prime)], axis=1)
  mixed = tf.tensordot(tf.constant(weights, latents.dtype), latents, axes=1)
  return image_grid(flow.bijector.forward(mixed).numpy(), rows=side)


def write_manifold(flow, experiment, model_dir, step, writer):
  """Writes `samples/manifold_step_N.png`, the `manifold_grid` of the first
  four test images (repeated if the split has fewer), and the same picture
  to TensorBoard; returns the path. For unconditional image runs (a
  conditional flow's latents depend on the label)."""
  examples = next(iter(experiment.dataset('test').unbatch().batch(4)))
  examples = tf.gather(examples, np.arange(4) % len(examples))
  grid = manifold_grid(flow, examples)
  path = os.path.join(model_dir, 'samples', f'manifold_step_{step}.png')
  save_png(grid, path)
  with writer.as_default(step=step):
    tf.summary.image('manifold', grid[None].astype(np.float32) / 255.)
  return path


def score_figure(path, test_scores, scored_scores, images=None, title=None):
  """Saves the histograms of the `[N]` `test_scores` and `scored_scores` on
  one axis and, given the scored `images` (uint8 `[N, H, W, C]`), a strip
  of those of the lowest and of the highest score."""
  rows = 1 if images is None else 3
  fig, axes = plt.subplots(
      rows, 1, figsize=(8, 3 + 1.5 * (rows - 1)), squeeze=False,
      layout='constrained',
      gridspec_kw=dict(height_ratios=[4] + [1] * (rows - 1)))
  axis = axes[0, 0]
  bins = np.histogram_bin_edges(np.concatenate([test_scores, scored_scores]),
                                bins=40)
  axis.hist(test_scores, bins, alpha=0.6, density=True, label='test split')
  axis.hist(scored_scores, bins, alpha=0.6, density=True, label='scored')
  axis.set_xlabel('score (larger: more unusual)')
  axis.legend()
  if title:
    axis.set_title(title, fontsize=9)
  if images is not None:
    order = np.argsort(scored_scores, kind='stable')
    count = min(STRIP_IMAGES, len(order))
    for axis, chosen, label in ((axes[1, 0], order[:count], 'lowest scores'),
                                (axes[2, 0], order[-count:], 'highest scores')):
      strip = image_grid(images[chosen], rows=1)
      axis.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip,
                  cmap='gray', vmin=0, vmax=255, interpolation='nearest')
      axis.set_axis_off()
      axis.set_title(label, fontsize=9)
  save_figure(fig, path)
