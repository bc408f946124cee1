"""The 2-D toy densities, made in code, and the exact density of 8gaussians."""

import numpy as np

from tf_realnvp.data import sources

TOY_DATASETS = ('moons', 'circles', 'checkerboard', 'spirals', '8gaussians')
# The classes of each toy (see `sample_toy`).
TOY_NUM_CLASSES = {'moons': 2, 'circles': 2, 'spirals': 2, 'checkerboard': 8,
                   '8gaussians': 8}

# The toy splits: (number of points, NumPy seed of the draw). They are fixed,
# so every run trains and is evaluated on the same points whatever its seed:
# split S is `sample_toy(name, *TOY_SPLITS[S])`.
TOY_SPLITS = {'train': (100_000, 0), 'test': (10_000, 1)}

# Standard deviation of the isotropic Gaussian noise around the noiseless
# toy shapes (see `sample_toy`).
TOY_NOISE_STD = {'moons': 0.1, 'circles': 0.1, 'spirals': 0.1,
                 '8gaussians': 0.5, 'checkerboard': 0.}
EIGHT_GAUSSIANS_RADIUS = 4.


# 2-D toy densities. Each shape returns its noiseless points and their labels.


def _unit_circle(angles):
  return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


def _moons(rng, num_samples):
  t = rng.uniform(0., np.pi, num_samples)
  lower = rng.random(num_samples) < 0.5
  moon = np.where(lower[:, None], [1., 0.5] - _unit_circle(t), _unit_circle(t))
  return 2. * (moon - [0.5, 0.25]), lower


def _circles(rng, num_samples):
  inner = rng.random(num_samples) >= 0.5
  radius = np.where(inner, 1.5, 3.)
  return (radius[:, None] * _unit_circle(
      rng.uniform(0., 2 * np.pi, num_samples)), inner)


def _spirals(rng, num_samples):
  phi = 3 * np.pi * np.sqrt(rng.random(num_samples))
  second_arm = rng.random(num_samples) >= 0.5
  radius = np.where(second_arm, -1., 1.) * 4. * phi / (3 * np.pi)
  return radius[:, None] * _unit_circle(phi), second_arm


def _checkerboard(rng, num_samples):
  column = rng.integers(0, 4, num_samples)
  half = rng.integers(0, 2, num_samples)
  row = 2 * half + column % 2
  cells = np.stack([column, row], axis=-1)
  return -4. + 2. * (cells + rng.random((num_samples, 2))), 2 * column + half


def eight_gaussians_means():
  """The 8 means `4 (cos(k pi/4), sin(k pi/4))`, `k = 0..7`, shape `[8, 2]`."""
  return EIGHT_GAUSSIANS_RADIUS * _unit_circle(np.arange(8) * np.pi / 4)


def _eight_gaussians(rng, num_samples):
  component = rng.integers(0, 8, num_samples)
  return eight_gaussians_means()[component], component


_TOY_SHAPES = {'moons': _moons, 'circles': _circles, 'spirals': _spirals,
               'checkerboard': _checkerboard, '8gaussians': _eight_gaussians}


def sample_toy(name, num_samples, seed, *, labels=False):
  """Draws `num_samples` points of the 2-D toy density `name`.

  Each point is `x = c + sigma * eps`, `eps ~ N(0, I_2)`, with `c` drawn from
  the noiseless shape below and `sigma = TOY_NOISE_STD[name]`:

  * `moons` (sigma 0.1): two interleaved half circles, as in scikit-learn's
    `make_moons`, scaled by 2 and centred. With `t ~ U[0, pi)` and a fair
    coin, `c = 2 ((cos t, sin t) - (1/2, 1/4))` (upper moon, label 0: centre
    (-1, -1/2), radius 2) or `c = 2 ((1 - cos t, 1/2 - sin t) - (1/2, 1/4))`
    (lower moon, label 1: centre (1, 1/2), radius 2).
  * `circles` (sigma 0.1): two concentric circles about the origin, radius 3
    (label 0) or 1.5 (label 1) by a fair coin, angle `theta ~ U[0, 2 pi)`.
  * `spirals` (sigma 0.1): two interleaved spiral arms, `c = +-s(phi)` by a
    fair coin (label 0: `+`, 1: `-`) with
    `s(phi) = (4 phi / (3 pi)) (cos phi, sin phi)`, `phi = 3 pi sqrt(u)`,
    `u ~ U[0, 1)` (1.5 turns out to radius 4; the square root spreads the
    points evenly along the arms).
  * `checkerboard` (no noise): uniform on the 8 black squares of a 4x4 board
    on `[-4, 4)^2`; square `(i, j)` is `[-4 + 2i, -2 + 2i) x [-4 + 2j, -2 + 2j)`,
    black when `i + j` is even, and has label `2i + j // 2` (0..7). Density
    1/32 there, 0 elsewhere.
  * `8gaussians` (sigma 0.5): equal mixture of 8 isotropic Gaussians centred
    at `4 (cos(k pi/4), sin(k pi/4))`, `k = 0..7` (label `k`); exact
    density: `toy_log_prob_8gaussians`.

  The labels come from the same draws as the points: asking for them
  changes no point.

  Args:
    name: one of `TOY_DATASETS`.
    num_samples: number of points.
    seed: NumPy seed (anything `np.random.default_rng` takes); the points are
      a deterministic function of it.
    labels: also return each point's label (above).

  Returns:
    float32 array `[num_samples, 2]`; with `labels`, also int32
    `[num_samples]`.
  """
  _check_name(name, TOY_DATASETS)
  rng = np.random.default_rng(seed)
  points, point_labels = _TOY_SHAPES[name](rng, num_samples)
  if TOY_NOISE_STD[name]:
    points = points + TOY_NOISE_STD[name] * rng.standard_normal(points.shape)
  points = points.astype(np.float32)
  if labels:
    return points, point_labels.astype(np.int32)
  return points


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


def _check_name(name, names):
  if name not in names:
    raise ValueError(f'Unknown dataset {name!r}; expected one of {names}.')


class ToySource(sources.Source):
  """A 2-D toy: points `[2]`, split `S` is `sample_toy(name, *TOY_SPLITS[S])`.

  8gaussians (`sample_toy`), and the exact density of 8gaussians.

  As a `Source` (`ToySource`), each toy has two fixed splits, the same points
  for every run whatever its seed (`TOY_SPLITS`), and labels
  (`TOY_NUM_CLASSES`).
  """

  def __init__(self, name):
    super().__init__(name, (2,), TOY_NUM_CLASSES[name])

  def num_examples(self, split):
    sources.check_split(split)
    return TOY_SPLITS[split][0]

  def read(self, split, *, stream=None, strict=False):
    del stream, strict  # Made in memory, never unreadable.
    sources.check_split(split)
    points, labels = sample_toy(self.name, *TOY_SPLITS[split], labels=True)
    return sources.Split.in_memory(points, labels)
