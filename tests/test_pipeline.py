"""Tests of the input pipelines: toy densities and their labels, TFDS images
(mocked), resuming the stream from an iterator checkpoint, and the error for
missing data. Other image sources and streaming: test_datasets.py."""

import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_realnvp import data
from tf_realnvp.data import tfds_source

TOYS = data.TOY_DATASETS
IMAGES = ('cifar10', 'celeb_a', 'mnist')
NUM_MOCK_IMAGES = 10


def take(dataset, num_batches):
  return [batch.numpy() for batch in dataset.take(num_batches)]


def distance_to_curve(points, curve):
  """Distance from each point to the nearest of the densely sampled `curve`."""
  return np.min(
      np.linalg.norm(points[:, None, :] - curve[None, :, :], axis=-1), axis=1)


def circle(centre, radius, angles):
  return np.asarray(centre) + radius * np.stack(
      [np.cos(angles), np.sin(angles)], axis=-1)


# 2-D toy densities.


@pytest.mark.parametrize('name', TOYS)
def test_toy_samples_are_float32_points_fixed_by_the_seed(name):
  points = data.sample_toy(name, 1000, seed=7)
  assert points.shape == (1000, 2) and points.dtype == np.float32
  assert np.all(np.isfinite(points))
  np.testing.assert_array_equal(points,
                                data.sample_toy(name, 1000, seed=7))
  assert not np.allclose(points, data.sample_toy(name, 1000, seed=8))


# SHA-256 (first 16 hex digits) of `sample_toy(name, 1000, seed=0)` as
# drawn before the toys had labels: benchmark figures depend on the points.
TOY_POINTS_SHA256 = {'moons': '147ef008026a7d92', 'circles': '2c0cda49b9dcff67',
                     'checkerboard': '9436abd5c28b216e',
                     'spirals': '24b425a15dba08ef',
                     '8gaussians': '7ede2ce394980e19'}


@pytest.mark.parametrize('name', TOYS)
def test_toy_points_are_those_drawn_before_labels_existed(name):
  points, labels = data.sample_toy(name, 1000, seed=0, labels=True)
  digest = hashlib.sha256(points.tobytes()).hexdigest()[:16]
  assert digest == TOY_POINTS_SHA256[name]
  np.testing.assert_array_equal(
      points, data.sample_toy(name, 1000, seed=0))
  assert labels.dtype == np.int32 and labels.shape == (1000,)
  assert set(labels) == set(range(data.describe(name).num_classes))


def nearest(points, centres):
  return np.argmin(
      np.linalg.norm(points[:, None] - np.asarray(centres)[None], axis=-1),
      axis=1)


def test_toy_labels_name_the_part_of_the_shape():
  sample = lambda name: data.sample_toy(name, 2000, 0, labels=True)
  points, labels = sample('moons')  # 0: the upper moon, centre (-1, -1/2).
  t = np.linspace(0., np.pi, 1500)
  to_moons = [distance_to_curve(points, circle((-1., -0.5), 2., t)),
              distance_to_curve(points, circle((1., 0.5), 2., -t))]
  assert np.mean(np.argmin(to_moons, axis=0) == labels) > 0.98
  points, labels = sample('circles')  # 0: radius 3, 1: radius 1.5.
  np.testing.assert_array_equal(
      labels, np.linalg.norm(points, axis=-1) < 2.25)
  points, labels = sample('spirals')  # 0: the arm +s(phi), 1: -s(phi).
  phi = np.linspace(0., 3 * np.pi, 3000)
  arm = (4. * phi / (3 * np.pi))[:, None] * np.stack(
      [np.cos(phi), np.sin(phi)], axis=-1)
  to_arms = [distance_to_curve(points, arm), distance_to_curve(points, -arm)]
  assert np.mean(np.argmin(to_arms, axis=0) == labels) > 0.97
  points, labels = sample('checkerboard')  # Square (i, j): 2i + j // 2.
  i, j = np.floor((points + 4.) / 2.).astype(int).T
  np.testing.assert_array_equal(labels, 2 * i + j // 2)
  points, labels = sample('8gaussians')  # Mean 4 (cos k pi/4, sin k pi/4).
  assert np.mean(nearest(points, data.eight_gaussians_means())
                 == labels) > 0.99


@pytest.mark.parametrize('name', ['moons', 'checkerboard'])
def test_toy_stream_with_labels_has_the_same_points(name):
  make = lambda labels: data.make_dataset(
      name, 'train', 64, seed=4, labels=labels)
  size, data_seed = data.TOY_SPLITS['train']
  points, labels = data.sample_toy(name, size, data_seed,
                                             labels=True)
  lookup = {tuple(p): l for p, l in zip(points, labels)}
  for (x, y), plain in zip(make(True).take(3), make(False).take(3)):
    np.testing.assert_array_equal(x, plain)
    assert y.dtype == tf.int32 and y.shape == (64,)
    np.testing.assert_array_equal(y, [lookup[tuple(p)] for p in x.numpy()])


def test_moons_lie_on_two_half_circles_of_radius_2():
  points = data.sample_toy('moons', 2000, seed=0)
  t = np.linspace(0., np.pi, 1500)
  upper = circle((-1., -0.5), 2., t)
  lower = circle((1., 0.5), 2., -t)
  to_upper = distance_to_curve(points, upper)
  to_lower = distance_to_curve(points, lower)
  distance = np.minimum(to_upper, to_lower)
  assert 0.08 < np.sqrt(np.mean(distance**2)) < 0.11  # noise std 0.1
  assert np.max(distance) < 0.6
  assert abs(np.mean(to_upper < to_lower) - 0.5) < 0.04


def test_circles_have_radii_3_and_1_5():
  points = data.sample_toy('circles', 20000, seed=0)
  radius = np.linalg.norm(points, axis=-1)
  outer = radius > 2.25
  deviation = np.where(outer, radius - 3., radius - 1.5)
  assert abs(np.mean(outer) - 0.5) < 0.02
  assert abs(np.mean(deviation)) < 0.01
  assert 0.09 < np.std(deviation) < 0.11  # noise std 0.1
  angles = np.arctan2(points[:, 1], points[:, 0])
  counts, _ = np.histogram(angles, bins=8, range=(-np.pi, np.pi))
  assert np.all(np.abs(counts / len(points) - 1 / 8) < 0.015)


def test_spirals_lie_on_two_arms():
  points = data.sample_toy('spirals', 2000, seed=0)
  phi = np.linspace(0., 3 * np.pi, 4000)
  arm = (4. * phi / (3 * np.pi))[:, None] * np.stack(
      [np.cos(phi), np.sin(phi)], axis=-1)
  to_arm = distance_to_curve(points, arm)
  to_other_arm = distance_to_curve(points, -arm)
  distance = np.minimum(to_arm, to_other_arm)
  assert 0.07 < np.sqrt(np.mean(distance**2)) < 0.11  # noise std 0.1
  assert np.max(distance) < 0.6
  assert abs(np.mean(to_arm < to_other_arm) - 0.5) < 0.04
  radius = np.linalg.norm(points, axis=-1)
  assert np.max(radius) < 4.5
  # Evenly spread along the arms: the first of 3 half turns (radius < 4/3)
  # is 1/9 of the arc length, the first two 4/9.
  assert abs(np.mean(radius < 4 / 3) - 1 / 9) < 0.02
  assert abs(np.mean(radius < 8 / 3) - 4 / 9) < 0.03


def test_checkerboard_is_uniform_on_the_black_squares():
  points = data.sample_toy('checkerboard', 20000, seed=0)
  assert np.all((points >= -4.) & (points < 4.))
  cells = np.floor((points + 4.) / 2.).astype(int)
  assert np.all(cells.sum(axis=-1) % 2 == 0)
  square_index = cells[:, 0] * 4 + cells[:, 1]
  counts = np.bincount(square_index, minlength=16)
  assert np.count_nonzero(counts) == 8
  assert np.all(np.abs(counts[counts > 0] / len(points) - 1 / 8) < 0.01)
  within_square = (points + 4.) / 2. - cells
  np.testing.assert_allclose(within_square.mean(axis=0), 0.5, atol=0.01)


def test_8gaussians_components_have_the_documented_means_and_std():
  points = data.sample_toy('8gaussians', 40000, seed=0)
  angles = np.arange(8) * np.pi / 4
  means = 4. * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
  nearest = np.argmin(
      np.linalg.norm(points[:, None] - means[None], axis=-1), axis=1)
  for k in range(8):
    component = points[nearest == k]
    assert abs(len(component) / len(points) - 1 / 8) < 0.01
    np.testing.assert_allclose(component.mean(axis=0), means[k], atol=0.03)
    np.testing.assert_allclose(component.std(axis=0), 0.5, atol=0.03)


def test_8gaussians_log_prob_is_a_normalized_density():
  step = 0.05
  axis = np.arange(-8., 8., step) + step / 2
  grid = np.stack(np.meshgrid(axis, axis), axis=-1)
  log_prob = data.toy_log_prob_8gaussians(grid)
  assert log_prob.shape == grid.shape[:-1]
  assert abs(np.sum(np.exp(log_prob)) * step**2 - 1.) < 1e-3
  at_a_mean = data.toy_log_prob_8gaussians([[0., 4.]])
  np.testing.assert_allclose(at_a_mean, [-np.log(8 * 2 * np.pi * 0.25)],
                             rtol=1e-6)


def test_8gaussians_log_prob_ranks_samples_above_the_centre():
  samples = data.sample_toy('8gaussians', 1000, seed=0)
  assert np.all(data.toy_log_prob_8gaussians(samples) > -15.)
  assert data.toy_log_prob_8gaussians([0., 0.]) < -25.


# Toy streams.


def test_toy_epoch_is_a_permutation_of_the_fixed_train_split():
  size, data_seed = data.TOY_SPLITS['train']
  train = data.sample_toy('moons', size, data_seed)
  dataset = data.make_dataset('moons', 'train', 1000, seed=3)
  batches = take(dataset, 2 * size // 1000)
  assert all(b.shape == (1000, 2) and b.dtype == np.float32 for b in batches)
  first, second = (np.concatenate(batches[:100]),
                   np.concatenate(batches[100:]))
  sort = lambda points: points[np.lexsort(points.T)]
  np.testing.assert_array_equal(sort(first), sort(train))
  np.testing.assert_array_equal(sort(second), sort(train))
  assert not np.array_equal(first, train)
  assert not np.array_equal(first, second)


def test_toy_test_split_comes_in_order_without_shuffle():
  size, data_seed = data.TOY_SPLITS['test']
  dataset = data.make_dataset(
      'spirals', 'test', 3000, seed=0, shuffle=False, repeat=False,
      drop_remainder=False)
  batches = take(dataset, 10)
  assert [len(b) for b in batches] == [3000, 3000, 3000, 1000]
  np.testing.assert_array_equal(
      np.concatenate(batches),
      data.sample_toy('spirals', size, data_seed))


def test_toy_splits_are_disjoint():
  train = data.sample_toy('8gaussians',
                                    *data.TOY_SPLITS['train'])
  test = data.sample_toy('8gaussians',
                                   *data.TOY_SPLITS['test'])
  assert not set(map(tuple, test)) & set(map(tuple, train))


def test_toy_order_depends_on_the_seed_only():
  make = lambda seed: take(
      data.make_dataset('checkerboard', 'train', 64, seed), 3)
  first = make(5)
  tf.random.set_seed(123)  # The global seed plays no part.
  np.testing.assert_array_equal(first, make(5))
  assert not np.array_equal(first, make(6))


def test_shapes_and_sizes():
  assert data.describe('moons').event_shape == (2,)
  assert data.describe('cifar10').event_shape == (32, 32, 3)
  assert data.describe('mnist', image_size=64).event_shape == (28, 28, 1)
  assert data.describe('celeb_a', image_size=64).event_shape == (64, 64, 3)
  assert data.describe('celeb_a').event_shape == (32, 32, 3)
  assert data.describe('downsampled_imagenet/64x64').event_shape == (
      64, 64, 3)
  assert data.describe('lsun/tower', image_size=16).event_shape == (
      16, 16, 3)
  assert data.describe('fashion_mnist').event_shape == (28, 28, 1)
  assert [data.describe(name).num_classes for name in
          ('moons', 'checkerboard', 'svhn_cropped', 'celeb_a', 'lsun/bedroom')
         ] == [2, 8, 10, None, None]
  assert data.describe('circles').num_examples('train') == 100_000
  assert data.describe('circles').num_examples('test') == 10_000


@pytest.mark.parametrize('name, split, kwargs, message', [
    ('imagenet', 'train', {}, 'Unknown dataset'),
    ('moons', 'validation', {}, 'split'),
    ('moons', 'train', {'random_flip': True}, 'random_flip'),
    ('celeb_a', 'train', {'labels': True}, 'celeb_a has no labels'),
])
def test_bad_arguments_are_refused(name, split, kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.make_dataset(name, split, 8, seed=0, **kwargs)


# Images under tfds.testing.mock_data.


@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=NUM_MOCK_IMAGES):
    yield


@pytest.fixture
def cifar10_images():
  """Mocks cifar10 with known random images (both splits); returns them."""
  images = np.random.default_rng(0).integers(
      0, 256, (NUM_MOCK_IMAGES, 32, 32, 3), dtype=np.uint8)

  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    return tf.data.Dataset.from_tensor_slices(
        {'image': images, 'label': np.arange(NUM_MOCK_IMAGES) % 10})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    yield images


def dequantizes(values, images):
  """Per image: whether `values` lie in `[images, images + 1]` pixelwise.

  (The upper end is closed: float32 rounds `255 + u` up to 256 for `u`
  within 2^-17 of 1.)
  """
  inside = (values >= images) & (values <= images.astype(np.float32) + 1.)
  return np.all(inside, axis=(-3, -2, -1))


def test_image_batches_are_dequantized_pixels(mock_tfds):
  for name in IMAGES:
    batches = take(data.make_dataset(
        name, 'train', 4, seed=0, image_size=16, download=False), 5)
    values = np.concatenate(batches)
    shape = data.describe(name, image_size=16).event_shape
    assert all(b.shape == (4,) + shape and b.dtype == np.float32
               for b in batches), name
    assert values.min() >= 0. and values.max() < 256., name
    fractions = values - np.floor(values)
    assert np.mean(fractions > 0.) > 0.99, name
    assert abs(np.mean(fractions) - 0.5) < 0.03, name


def test_image_stream_is_fixed_by_the_seed(mock_tfds):
  make = lambda seed: take(data.make_dataset(
      'mnist', 'train', 4, seed, random_flip=True, download=False), 6)
  first = make(1)
  tf.random.set_seed(99)  # The global seed plays no part.
  np.testing.assert_array_equal(first, make(1))
  assert not np.array_equal(first, make(2))


def test_image_epoch_is_a_permutation_of_the_split(cifar10_images):
  images = cifar10_images
  dataset = data.make_dataset(
      'cifar10', 'train', NUM_MOCK_IMAGES, seed=0, download=False)
  orders, in_split_order = [], []
  for epoch in take(dataset, 3):
    matches = dequantizes(epoch[:, None], images[None])
    assert np.all(matches.sum(axis=0) == 1) and np.all(matches.sum(axis=1) == 1)
    orders.append(tuple(np.argmax(matches, axis=1)))
    in_split_order.append(epoch[np.argsort(orders[-1])])
  assert len(set(orders + [tuple(range(NUM_MOCK_IMAGES))])) == 4
  # New noise for an image every time it comes again.
  assert np.mean(in_split_order[0] == in_split_order[1]) < 0.001


def test_test_split_is_deterministic_and_independent_of_batch_size(
    cifar10_images):
  images = cifar10_images

  def test_split(batch_size, seed=0):
    return np.concatenate(take(data.make_dataset(
        'cifar10', 'test', batch_size, seed, shuffle=False, repeat=False,
        drop_remainder=False, download=False), 100))

  values = test_split(4)
  assert len(values) == NUM_MOCK_IMAGES
  assert np.all(dequantizes(values, images))
  np.testing.assert_array_equal(values, test_split(4))
  np.testing.assert_array_equal(values, test_split(3))
  assert not np.array_equal(values, test_split(4, seed=1))


@pytest.mark.parametrize('random_flip', [False, True])
def test_flips_only_with_random_flip(cifar10_images, random_flip):
  images = cifar10_images
  batches = take(data.make_dataset(
      'cifar10', 'test', NUM_MOCK_IMAGES, seed=0, random_flip=random_flip,
      shuffle=False, download=False), 3)
  for values in batches:
    original = dequantizes(values, images)
    mirrored = dequantizes(values, images[:, :, ::-1])
    assert np.all(original | mirrored)
    assert np.any(mirrored) == random_flip
  assert np.mean([dequantizes(values, images) for values in batches]) > 0.2


def celeb_a_with_a_frame(self, split, decoders=None, read_config=None,
                         **kwargs):
  """Mock CelebA split: photos that are 200 inside the central 148x148, 0 out."""
  del self, split, decoders, read_config, kwargs
  image = np.zeros((218, 178, 3), np.uint8)
  image[35:35 + 148, 15:15 + 148] = 200
  return tf.data.Dataset.from_tensors({'image': image}).repeat(3)


@pytest.mark.parametrize('image_size', [148, 32])
def test_celeb_a_is_the_central_148_square_resized(image_size):
  with tfds.testing.mock_data(as_dataset_fn=celeb_a_with_a_frame):
    batch, = take(data.make_dataset(
        'celeb_a', 'test', 3, seed=0, image_size=image_size, download=False),
                  1)
  assert batch.shape == (3, image_size, image_size, 3)
  assert np.all(dequantizes(batch, np.uint8(200)))


# Resuming from an iterator checkpoint.


@pytest.mark.parametrize('name, kwargs', [
    ('moons', {}),
    ('mnist', {'random_flip': True, 'download': False}),
])
def test_iterator_checkpoint_resumes_the_exact_stream(mock_tfds, tmp_path,
                                                      name, kwargs):
  make = lambda: data.make_dataset(name, 'train', 4, seed=3,
                                             **kwargs)
  iterator = iter(make())
  for _ in range(3):  # Into the second epoch of the mock images.
    next(iterator)
  path = tf.train.Checkpoint(iterator=iterator).save(tmp_path / 'ckpt')
  expected = [next(iterator).numpy() for _ in range(4)]

  tf.train.Checkpoint(iterator=iterator).restore(path)
  np.testing.assert_array_equal([next(iterator) for _ in range(4)], expected)
  resumed = iter(make())  # As in a new process.
  tf.train.Checkpoint(iterator=resumed).restore(path)
  np.testing.assert_array_equal([next(resumed) for _ in range(4)], expected)


# Datasets that are not on disk.


def expect_unavailable(data_dir, name='mnist', **kwargs):
  with pytest.raises(data.DatasetUnavailableError) as error:
    data.make_dataset(name, 'train', 4, seed=0,
                                data_dir=str(data_dir), **kwargs)
  message = str(error.value)
  assert f"'{name}'" in message and str(data_dir) in message
  assert (f'tfds build {name} --file_format=array_record --data_dir='
          in message)
  assert '--data_dir' in message
  return error.value


@pytest.fixture
def no_download(monkeypatch):
  """Fails the test if tfds starts a download."""

  def download_and_prepare(*args, **kwargs):
    raise AssertionError('download_and_prepare must not be called')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      download_and_prepare)


def test_missing_dataset_without_download_fails_at_once(tmp_path, monkeypatch,
                                                        no_download):
  monkeypatch.setattr(tfds_source, 'reachable', None)  # Not even probed.
  error = expect_unavailable(tmp_path, download=False)
  assert 'download=False' in str(error)
  with pytest.raises(data.DatasetUnavailableError):
    data.describe('cifar10', data_dir=str(tmp_path),
                  download=False).num_examples('test')


def test_missing_dataset_offline_fails_without_trying_to_download(
    tmp_path, monkeypatch, no_download):
  probes = []
  monkeypatch.setattr(tfds_source, 'reachable',
                      lambda *args: probes.append(args) and False)
  error = expect_unavailable(tmp_path, name='celeb_a')
  assert probes == [(tfds_source.CONNECTIVITY_PROBE_URL,
                     tfds_source.CONNECTIVITY_TIMEOUT_S)]
  assert 'no answer from https://' in str(error)


def test_failed_download_becomes_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_source, 'reachable', lambda *_: True)

  def download_and_prepare(*args, **kwargs):
    raise ConnectionError('Max retries exceeded')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      download_and_prepare)
  error = expect_unavailable(tmp_path, name='cifar10')
  assert 'ConnectionError: Max retries exceeded' in str(error)
  assert isinstance(error.__cause__, ConnectionError)


@pytest.fixture
def no_proxy(monkeypatch):
  for variable in ('http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'):
    monkeypatch.delenv(variable, raising=False)


class NotFound(http.server.BaseHTTPRequestHandler):

  def do_HEAD(self):  # pylint: disable=invalid-name
    self.send_error(404)

  def log_message(self, *args):
    pass


def test_any_http_answer_counts_as_reachable(no_proxy):
  server = http.server.HTTPServer(('127.0.0.1', 0), NotFound)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f'http://127.0.0.1:{server.server_port}/'
    assert tfds_source.reachable(url, timeout_s=5.)
  finally:
    server.shutdown()
    server.server_close()
  assert not tfds_source.reachable(url, timeout_s=5.)  # Port closed now.


def test_a_connection_without_an_answer_is_not_reachable(no_proxy):
  # Some networks accept every TCP connection and then say nothing.
  with socket.socket() as silent:
    silent.bind(('127.0.0.1', 0))
    silent.listen()
    url = f'http://127.0.0.1:{silent.getsockname()[1]}/'
    assert not tfds_source.reachable(url, timeout_s=0.5)
