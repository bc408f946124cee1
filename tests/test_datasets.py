"""Tests of the image sources: TFDS datasets by name (mocked) and one not on
disk, a folder of PNG/JPEG files, a .npz file, streaming from disk, bad data,
and --preset."""

import dataclasses
import json
import logging
import os

from absl import logging as absl_logging
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from runs import TINY_IMAGE_MODEL
from runs import resolve_as_train_py

from tf_realnvp import config as config_lib
from tf_realnvp import console
from tf_realnvp import data
from tf_realnvp import evaluation
from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.data import folder as folder_lib
from tf_realnvp.data import sources
from tf_realnvp.data import tfds_source

# The smallest run that trains and evaluates an image model.
TINY = dict(TINY_IMAGE_MODEL, batch_size=4, train_steps=2,
            eval_batches=1, export=False)
# Pixel values of the two classes of the generated folder.
CLASS_VALUES = {'dark': 40, 'light': 200}


def take(dataset, num_batches):
  return [tf.nest.map_structure(lambda t: t.numpy(), batch)
          for batch in dataset.take(num_batches)]


def train(tmp_path, **settings):
  config = config_lib.Config(model_dir=str(tmp_path / 'run'),
                             **{**TINY, **settings})
  return training.train_and_evaluate(experiment.resolve(config))


def final_weights(model_dir):
  """The flow's and optimizer's arrays in the latest checkpoint."""
  reader = tf.train.load_checkpoint(os.path.join(model_dir, 'checkpoints'))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name.startswith(('flow/', 'optimizer/'))}


# TFDS datasets by name.


# The paper's datasets and two more, with the image size each run takes.
TFDS_DATASETS = [
    ('downsampled_imagenet/32x32', dict(image_size=8)),
    ('downsampled_imagenet/64x64', dict(image_size=8)),
    ('lsun/bedroom', dict(image_size=8)),
    ('lsun/tower', dict(image_size=8)),
    ('lsun/church_outdoor', dict(image_size=8)),
    ('celeb_a', dict(image_size=8)),
    ('svhn_cropped', {}),
    ('fashion_mnist', {}),
]


@pytest.mark.parametrize('name, settings', TFDS_DATASETS)
def test_a_tfds_dataset_by_name_gives_training_and_test_batches(
    tmp_path, name, settings):
  """Each dataset's own features and splits make batches of the event shape
  in [0, 256), resized where the run asks."""
  with tfds.testing.mock_data(num_examples=8):
    run = experiment.resolve(config_lib.Config(
        dataset=name, model_dir=str(tmp_path / 'run'), **TINY, **settings))
    for split in ('train', 'test'):
      (batch,) = take(run.dataset(split), 1)
      assert batch.shape == (TINY['batch_size'],) + run.data.event_shape
      assert 0. <= batch.min() and batch.max() < 256.
  assert run.config.image_size == settings.get('image_size')
  if 'image_size' in settings:
    assert run.data.event_shape[:2] == (8, 8)


@pytest.mark.parametrize('name, settings', [
    ('celeb_a', dict(image_size=8)), ('fashion_mnist', {})])
def test_a_tfds_dataset_by_name_trains_and_evaluates(tmp_path, name,
                                                     settings):
  """Resized colour and native greyscale images, end to end."""
  with tfds.testing.mock_data(num_examples=8):
    result = train(tmp_path, dataset=name, **settings)
    evaluated = evaluation.evaluate(str(tmp_path / 'run'), 1, 1.0, 1, False)
  assert result['step'] == 2 and np.isfinite(result['test_bits_per_dim'])
  assert np.isfinite(evaluated['test_bits_per_dim'])
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['image_size'] == settings.get('image_size')


@pytest.fixture
def builder_calls(monkeypatch):
  """The names `tfds.builder` is called with."""
  calls = []
  builder = tfds.builder

  def counted(name, *args, **kwargs):
    calls.append(name)
    return builder(name, *args, **kwargs)

  monkeypatch.setattr(tfds, 'builder', counted)
  return calls


def test_a_run_makes_the_tfds_builder_once(tmp_path, builder_calls):
  """Resolving, the step count and both streams share one description."""
  config = config_lib.Config(dataset='cifar10', model_dir=str(tmp_path / 'run'),
                             **TINY)
  with tfds.testing.mock_data(num_examples=8):
    run = experiment.resolve(config)
    assert run.steps_per_epoch() == 2
    assert take(run.dataset('train'), 1)[0].shape == (4, 32, 32, 3)
    assert take(run.dataset('test'), 1)[0].shape == (4, 32, 32, 3)
    assert builder_calls == ['cifar10']
    training.train_and_evaluate(run)
    assert builder_calls == ['cifar10']
    # Resumed: the run's own resolve, not another for the check.
    training.train_and_evaluate(experiment.resolve(
        dataclasses.replace(config, train_steps=3)))
  assert builder_calls == ['cifar10'] * 2


def test_lsun_crops_at_random_in_training_and_centrally_in_testing():
  with tfds.testing.mock_data(num_examples=4):
    make = lambda random_crop: take(data.make_dataset(
        'lsun/tower', 'train', 4, seed=0, image_size=8, download=False,
        random_crop=random_crop, shuffle=False), 2)
    central, cropped = make(False), make(True)
  assert central[0].shape == cropped[0].shape == (4, 8, 8, 3)
  np.testing.assert_array_equal(np.floor(central[0]), np.floor(central[1]))
  assert not np.array_equal(np.floor(cropped[0]), np.floor(cropped[1]))


@pytest.fixture
def quiet(monkeypatch):
  """`console.quiet`; the log levels it sets are undone after the test."""
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL',
                     os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0'))
  tf_logger = logging.getLogger('tensorflow')
  levels = tf_logger.level, absl_logging.get_verbosity()
  yield console.quiet
  tf_logger.setLevel(levels[0])
  absl_logging.set_verbosity(levels[1])


@pytest.mark.parametrize('verbosity', [0, 1])
@pytest.mark.parametrize('leftover', [False, True],
                         ids=['no_folder', 'empty_version_folder'])
def test_a_tfds_dataset_not_on_disk_stops_a_run_with_its_message_alone(
    tmp_path, monkeypatch, capsys, caplog, quiet, verbosity, leftover):
  """Offline, in process as train.py wraps its `main`: exit code 1 and the
  `DatasetUnavailableError`, also where an empty version folder was left
  over. tfds's note that the folder has no dataset_info.json shows from -v
  on (test_cli runs train.py itself into the message)."""
  quiet(verbosity)
  monkeypatch.setattr(tfds_source, 'reachable', lambda *_: False)
  data_dir = tmp_path / 'tensorflow_datasets'
  if leftover:
    os.makedirs(data_dir / 'cifar10' / '3.0.2')
  config = config_lib.Config(dataset='cifar10', data_dir=str(data_dir),
                             model_dir=str(tmp_path / 'run'))

  def main(argv):
    del argv
    training.train_and_evaluate(experiment.resolve(config))

  with pytest.raises(SystemExit) as exit_info:
    console.exit_on_errors(main, {data.DatasetUnavailableError: 1})(
        ['train.py'])
  assert exit_info.value.code == 1
  assert capsys.readouterr().err.startswith(
      "error: The tensorflow-datasets dataset 'cifar10' is not prepared")
  notes = [r.getMessage() for r in caplog.records]
  if verbosity:
    assert any('has no dataset_info.json' in note for note in notes), notes
  else:
    assert not notes


# A folder of image files.


def write_image(path, image):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  encode = tf.io.encode_png if path.endswith('.png') else tf.io.encode_jpeg
  tf.io.write_file(path, encode(image))


def write_corrupt(path):
  with open(path, 'wb') as f:
    f.write(b'\x89PNG not really an image')


def image(value, channels=3, height=12, width=16):
  return np.full((height, width, channels), value, np.uint8)


@pytest.fixture
def folder(tmp_path):
  """Two classes of 12x16 PNGs and JPEGs, one grayscale image, one corrupt
  file."""
  root = str(tmp_path / 'images')
  for name, value in CLASS_VALUES.items():
    for i in range(12):
      extension = '.png' if i % 2 else '.jpg'
      write_image(os.path.join(root, name, f'{i}{extension}'), image(value))
  write_image(os.path.join(root, 'light', 'gray.png'), image(200, channels=1))
  write_corrupt(os.path.join(root, 'dark', 'broken.png'))
  return root


def test_a_folder_trains_with_labels_and_counts_the_corrupt_file(
    tmp_path, folder, caplog):
  with caplog.at_level(logging.WARNING):
    result = train(tmp_path, dataset=f'folder:{folder}', image_size=8,
                   channels=3)
  assert result['step'] == 2
  broken = os.path.join(folder, 'dark', 'broken.png')
  assert (f'Skipped {broken} (1 skipped so far): not a readable PNG or JPEG '
          'image') in caplog.text
  assert experiment.resolve(config_lib.Config(
      dataset=f'folder:{folder}', channels=3)).data.num_classes == 2


def test_folder_labels_are_the_class_subfolders(folder):
  for split in ('train', 'test'):
    dataset = data.make_dataset(
        f'folder:{folder}', split, 4, seed=0, image_size=8, channels=3,
        labels=True, shuffle=False, repeat=False, drop_remainder=False)
    x, labels = map(np.concatenate, zip(*take(dataset, 100)))
    assert x.shape[1:] == (8, 8, 3) and set(labels) <= {0, 1}
    # JPEG may move a flat colour by a level or two.
    means = x.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(
        means, np.where(labels == 0, CLASS_VALUES['dark'],
                        CLASS_VALUES['light']) + 0.5, atol=3)


def test_the_folder_split_is_stable_when_files_are_added(folder):
  before = {split: folder_lib.folder_split(folder, split)[0]
            for split in ('train', 'test')}
  assert before['train'] and before['test']
  for i in range(20):
    write_image(os.path.join(folder, 'dark', f'new{i}.png'), image(40))
  after = {split: folder_lib.folder_split(folder, split)[0]
           for split in ('train', 'test')}
  for split in ('train', 'test'):
    assert set(before[split]) < set(after[split])
  assert not set(after['train']) & set(after['test'])


def test_grayscale_stays_one_channel_and_converts_as_asked(tmp_path):
  root = str(tmp_path / 'gray')
  for i in range(12):
    write_image(os.path.join(root, f'{i}.png'), image(100, channels=1))
  name = f'folder:{root}'
  assert data.describe(name, image_size=8).event_shape == (8, 8, 1)
  assert data.describe(name).num_classes is None
  batch, = take(data.make_dataset(name, 'train', 4, 0,
                                            image_size=8, channels=3), 1)
  assert batch.shape == (4, 8, 8, 3) and np.all(np.floor(batch) == 100)


def test_a_folder_mixing_grayscale_and_colour_is_rgb(tmp_path, caplog):
  root = str(tmp_path / 'mixed')
  for i in range(12):  # 0-5 grayscale (PNG and JPEG), 6-11 colour.
    extension = '.png' if i % 2 else '.jpg'
    write_image(os.path.join(root, f'{i}{extension}'),
                image(10 * i, channels=1 + 2 * (i > 5)))
  name = f'folder:{root}'
  with caplog.at_level(logging.WARNING):
    assert data.describe(name, image_size=8).event_shape == (8, 8, 3)
  notes = [r.getMessage() for r in caplog.records
           if 'grayscale' in r.getMessage()]
  assert notes == [f'{root} holds colour images: its 6 grayscale images are '
                   'converted to RGB (--channels=1 makes every image '
                   'grayscale).']
  x = np.concatenate(take(data.make_dataset(
      name, 'train', 1, 0, image_size=8, shuffle=False, repeat=False), 12))
  assert x.shape[1:] == (8, 8, 3)
  pixels = np.floor(x)
  grayscale = pixels.mean(axis=(1, 2, 3)) < 55  # The values 0-50.
  assert grayscale.any() and not grayscale.all()
  # A converted image's three channels are its gray value.
  np.testing.assert_array_equal(pixels[grayscale, ..., 0],
                                pixels[grayscale, ..., 1])
  np.testing.assert_array_equal(pixels[grayscale, ..., 0],
                                pixels[grayscale, ..., 2])
  assert data.describe(name, channels=1).event_shape == (32, 32, 1)


@pytest.mark.parametrize('make_folder, settings, message', [
    (lambda root: os.makedirs(root), {},
     'holds no .png, .jpg or .jpeg files'),
    (lambda root: [write_image(os.path.join(root, f'{i}.png'), image(9, 3, 6))
                   for i in range(12)], {},
     'smaller than --image_size=8: choose a smaller --image_size'),
    (lambda root: [write_image(os.path.join(root, f'{i}.jpg'), image(9))
                   for i in range(11)] + [
                       write_corrupt(os.path.join(root, 'x.jpg'))],
     dict(strict_data=True), 'x.jpg is not a readable PNG or JPEG image'),
])
def test_bad_folders_are_one_line_errors(tmp_path, make_folder, settings,
                                         message):
  root = str(tmp_path / 'bad')
  make_folder(root)
  with pytest.raises(data.DataError, match=message) as error:
    take(data.make_dataset(f'folder:{root}', 'train', 4, 0,
                                     image_size=8, **settings), 1)
  assert '\n' not in str(error.value)


def test_a_bad_folder_stops_a_run_with_one_line(tmp_path, capsys):
  """In process, as train.py wraps its `main` (exit code 1 for data that
  cannot be used; test_cli runs train.py itself into that exit code)."""
  os.makedirs(tmp_path / 'empty')
  code, stderr = resolve_as_train_py(
      config_lib.Config(dataset=f'folder:{tmp_path / "empty"}',
                        model_dir=str(tmp_path / 'run')),
      {data.DataError: 1}, capsys)
  assert code == 1
  assert stderr.startswith('error: ') and 'holds no .png' in stderr
  assert stderr.count('\n') == 1, stderr
  assert not (tmp_path / 'run').exists()


def test_a_missing_folder_is_a_setting_error():
  with pytest.raises(experiment.ConfigError, match='no such folder'):
    experiment.resolve(config_lib.Config(dataset='folder:/no/such/folder'))


def test_describe_tells_the_sources_apart_by_the_name_alone(
    tmp_path, monkeypatch):
  """The one dispatch on the name is `describe`'s: no TFDS builder for the
  other sources, and their splits are read without the name."""
  monkeypatch.setattr(tfds, 'builder', None)
  root = str(tmp_path / 'images')
  for i in range(12):
    write_image(os.path.join(root, f'{i}.png'), image(10 * i))
  path = str(tmp_path / 'data.npz')
  np.savez(path, train=np.zeros((4, 8, 8, 3), np.uint8),
           test=np.zeros((2, 8, 8, 3), np.uint8))
  described = {name: data.describe(name, image_size=8) for name in
               ('moons', f'folder:{root}', f'npz:{path}')}
  assert [type(s).__name__ for s in described.values()] == [
      'ToySource', 'FolderSource', 'NpzSource']
  for name, source in described.items():
    size = source.num_examples('train')
    if source.is_image:  # Nothing downstream asks the name again.
      source.name = 'nosuch'
    batch, = take(data.batches(source, 'train', 2, 0), 1)
    assert batch.shape == (2,) + source.event_shape, name
    assert source.num_examples('train') == size


# A .npz file.


def test_npz_arrays_with_labels(tmp_path):
  rng = np.random.default_rng(0)
  train_images = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
  path = str(tmp_path / 'data.npz')
  np.savez(path, train=train_images, test=train_images[:2],
           train_labels=np.arange(6) % 3, test_labels=[0, 1])
  name = f'npz:{path}'
  assert data.describe(name).event_shape == (8, 8, 1)
  assert data.describe(name).num_classes == 3
  assert data.describe(name).num_examples('test') == 2
  x, labels = take(data.make_dataset(
      name, 'train', 6, 0, labels=True, shuffle=False), 1)[0]
  np.testing.assert_array_equal(np.floor(x[..., 0]), train_images)
  np.testing.assert_array_equal(labels, np.arange(6) % 3)
  np.savez(path, train=train_images.astype(np.float32), test=train_images)
  with pytest.raises(data.DataError, match='expected uint8'):
    data.describe(name).event_shape


# Streaming from disk.


@pytest.fixture
def known_cifar10():
  """cifar10 mocked with known images and labels, for `as_dataset` and for
  the random-access data source alike."""
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 10)

  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del self, split, decoders, read_config, kwargs
    return tf.data.Dataset.from_tensor_slices({'image': images,
                                               'label': labels})

  def as_data_source(self, split, **kwargs):  # Serialized tf.Examples.
    del split, kwargs
    return [self.info.features.serialize_example(
        {'image': i, 'label': l, 'id': 'x'}) for i, l in zip(images, labels)]

  with tfds.testing.mock_data(as_dataset_fn=as_dataset,
                              as_data_source_fn=as_data_source):
    yield


@pytest.mark.parametrize('split', ['train', 'test'])
def test_streaming_gives_the_batches_of_the_in_memory_path(known_cifar10,
                                                           split):
  make = lambda stream: take(data.make_dataset(
      'cifar10', split, 4, seed=5, random_flip=True, labels=True,
      download=False, stream=stream, shuffle=split == 'train'), 6)
  for streamed, in_memory in zip(make(True), make(False)):
    np.testing.assert_array_equal(streamed[0], in_memory[0])
    np.testing.assert_array_equal(streamed[1], in_memory[1])


def test_a_streamed_folder_gives_the_batches_of_the_in_memory_path(tmp_path):
  root = str(tmp_path / 'images')
  for i in range(12):
    write_image(os.path.join(root, f'{i}.png'), image(10 * i))
  make = lambda stream: take(data.make_dataset(
      f'folder:{root}', 'train', 4, seed=2, image_size=8, stream=stream), 4)
  np.testing.assert_array_equal(make(True), make(False))


def test_a_streamed_folder_skips_and_counts_what_it_finds_late(
    tmp_path, caplog):
  root = str(tmp_path / 'images')
  for i in range(12):
    write_image(os.path.join(root, f'{i}.png'), image(10 * i))
  write_image(os.path.join(root, 'small.png'), image(10, height=4))
  write_corrupt(os.path.join(root, 'z.png'))
  with caplog.at_level(logging.WARNING):
    batches = take(data.make_dataset(
        f'folder:{root}', 'train', 4, seed=2, image_size=8, stream=True), 12)
  assert len(batches) == 12  # Three epochs, each of the 12 good images.
  skips = [r.getMessage() for r in caplog.records
           if r.getMessage().startswith('Skipped')]
  assert len(skips) == 2, skips  # Once each, not once per epoch.
  small = os.path.join(root, 'small.png')
  assert any(s.startswith(f'Skipped {small} (') and
             'smaller than --image_size=8' in s for s in skips)


def test_a_streamed_run_resumes_exactly(tmp_path, monkeypatch):
  """N + N steps, interrupted and resumed, end with the weights of 2N."""
  monkeypatch.setattr(sources, 'IN_MEMORY_LIMIT_BYTES', 0)
  settings = dict(dataset='cifar10', checkpoint_every=2, eval_every=100)
  with tfds.testing.mock_data(num_examples=6):
    train(tmp_path / 'resumed', train_steps=3, **settings)
    train(tmp_path / 'resumed', train_steps=6, **settings)
    train(tmp_path / 'straight', train_steps=6, **settings)
  resumed = final_weights(str(tmp_path / 'resumed' / 'run'))
  straight = final_weights(str(tmp_path / 'straight' / 'run'))
  assert resumed.keys() == straight.keys() and resumed
  for name, value in straight.items():
    np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_a_tfrecord_split_too_large_for_memory_says_how_to_stream(
    monkeypatch):
  monkeypatch.setattr(sources, 'IN_MEMORY_LIMIT_BYTES', 0)

  def not_array_record(self, *args, **kwargs):
    raise NotImplementedError('Random access data source for file format '
                              'tfrecord is not supported.')

  with tfds.testing.mock_data(num_examples=4,
                              as_data_source_fn=not_array_record):
    with pytest.raises(data.DataError,
                       match='--file_format=array_record'):
      data.make_dataset('cifar10', 'train', 4, 0, download=False,
                                  stream=True)


# --preset=paper.


@pytest.mark.parametrize('name, expected', [
    ('cifar10', dict(num_scales=2, num_res_blocks=8, num_filters=64,
                     image_size=None)),
    ('downsampled_imagenet/32x32', dict(num_scales=4, num_res_blocks=4,
                                        num_filters=32, image_size=32)),
    ('lsun/bedroom', dict(num_scales=5, num_res_blocks=2, num_filters=32,
                          image_size=64)),
    ('celeb_a', dict(num_scales=5, num_res_blocks=2, num_filters=32,
                     image_size=64)),
])
def test_the_paper_preset(name, expected):
  resolved = experiment.resolve(
      config_lib.Config(dataset=name, preset='paper')).config
  assert {k: getattr(resolved, k) for k in expected} == expected
  assert (resolved.batch_size, resolved.flow) == (64, 'realnvp')
  explicit = experiment.resolve(config_lib.Config(
      dataset=name, preset='paper', num_res_blocks=1, flow='glow')).config
  assert (explicit.num_res_blocks, explicit.flow) == (1, 'glow')


@pytest.mark.parametrize('settings, message', [
    (dict(dataset='mnist', preset='paper'), "--preset=paper knows the paper's"),
    (dict(dataset='cifar10', image_size=16), '--image_size applies to'),
    (dict(dataset='cifar10', channels=1), '--channels applies to folder:'),
    (dict(dataset='nosuch'), '--dataset=nosuch: Unknown dataset'),
])
def test_bad_data_settings_are_config_errors(settings, message):
  with pytest.raises(experiment.ConfigError, match=message):
    experiment.resolve(config_lib.Config(**settings))
