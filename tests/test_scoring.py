"""Scoring a run's own and others' images: evaluate.py --score, the library
API, the SavedModel recipe, the typicality test, the manifold figure.

One tiny flow (one scale, one residual block of 8 feature maps) trains once
on 300 smooth random fields of 16x16 (`benchmarks.ood_folders`); the tests
score folders of held-out fields, flat colours and uniform noise against it.
"""

import csv
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import ood_folders
from tf_realnvp import config as config_lib
from tf_realnvp import console
from tf_realnvp import data
from tf_realnvp import evaluation
from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.evaluation import scoring
from tf_realnvp.flows import objective

SIZE = 16
CORRUPT = 'zz_corrupt.png'


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """`(model_dir, folders)`: the trained run, and the folders by name
  (`ood_folders.SETS`); the flat folder also holds one corrupt file."""
  root = tmp_path_factory.mktemp('scoring')
  folders = {}
  for name, (make, offset) in ood_folders.SETS.items():
    folders[name] = str(root / name)
    count = 300 if name == 'train' else 100
    ood_folders.write_folder(make(count, SIZE, 1, offset), folders[name])
  with open(os.path.join(folders['flat'], CORRUPT), 'wb') as f:
    f.write(b'not a png')
  keras.utils.set_random_seed(0)
  model_dir = str(root / 'run')
  training.train_and_evaluate(experiment.resolve(config_lib.Config(
      dataset=f'folder:{folders["train"]}', flow='realnvp', image_size=SIZE,
      num_scales=1,
      num_res_blocks=1, num_filters=8, batch_size=32, train_steps=250,
      eval_every=250, model_dir=model_dir)))
  return model_dir, folders


@pytest.fixture(scope='module')
def summaries(run):
  """`score_run`'s summary of each other folder (typicality batches: 20
  flat images, the 100 held-out fields as one)."""
  model_dir, folders = run
  batches = {'flat': 20, 'noise': None, 'held_out': 100}
  return {name: scoring.score_run(model_dir, f'folder:{folders[name]}',
                                  score_batch=batch)
          for name, batch in batches.items()}


def test_auroc_counts_ties_as_half():
  assert scoring.auroc([3., 4.], [1., 2.]) == 1.
  assert scoring.auroc([1., 2.], [3., 4.]) == 0.
  assert scoring.auroc([1., 1.], [1., 1., 1.]) == 0.5
  assert scoring.auroc([2., 3.], [1., 2.]) == pytest.approx((1 + .5 + 1 + 1) / 4)


def test_points_score_their_nll_in_nats_without_complexity():
  points = np.array([[0., 0.], [1., 2.], [3., 0.]], np.float32)
  scores = scoring.score(lambda x: -tf.reduce_sum(x**2, axis=-1) / 2, points,
                         batch_size=2)
  np.testing.assert_allclose(scores.nll, [0., 2.5, 4.5])
  assert scores.complexity is None and scores.corrected is scores.nll


def test_the_typicality_test_holds_its_level_and_rejects_a_shift():
  rng = np.random.default_rng(0)
  reference = rng.standard_normal(200)
  typical = scoring.typicality_p_values(rng.standard_normal(50 * 20),
                                        reference, 20, draws=999)
  assert len(typical) == 50 and np.mean(np.array(typical) < 0.05) <= 0.12
  shifted = scoring.typicality_p_values(rng.standard_normal(3 * 20) + 1.5,
                                        reference, 20, draws=999)
  assert shifted == [1 / 1000] * 3


def test_the_default_score_flags_flat_colours_and_noise(summaries):
  """Raw likelihood ranks the flat images as more typical than the test
  split (Nalisnick et al.'s trap); the complexity-corrected score does not."""
  assert summaries['flat']['auroc'] >= 0.9
  assert summaries['flat']['auroc_bits_per_dim'] < 0.5
  assert summaries['noise']['auroc'] >= 0.9


def test_held_out_images_score_like_the_test_split(summaries):
  assert 0.3 <= summaries['held_out']['auroc'] <= 0.7


def test_the_typicality_test_rejects_flat_batches_only(summaries):
  flat = summaries['flat']['typicality']['p_values']
  assert len(flat) == 5 and max(flat) < 0.01
  (held_out,) = summaries['held_out']['typicality']['p_values']
  assert held_out > 0.05


def test_the_csv_has_a_row_per_readable_file(run, summaries):
  _, folders = run
  with open(summaries['flat']['csv']) as f:
    rows = list(csv.DictReader(f))
  readable = sorted(set(os.listdir(folders['flat'])) - {CORRUPT})
  assert [row['id'] for row in rows] == readable
  assert summaries['flat']['count'] == 100 and summaries['flat']['skipped'] == 1
  row = rows[0]
  assert float(row['score']) == pytest.approx(
      float(row['bits_per_dim']) - float(row['complexity_bits_per_dim']),
      abs=1e-5)
  assert os.path.exists(summaries['flat']['figure'])


def test_a_corrupt_file_is_named(run, caplog):
  """As `score_run` reads a folder."""
  _, folders = run
  source = data.describe(f'folder:{folders["flat"]}', SIZE, 1)
  files = source.read_every_file()
  with caplog.at_level(logging.WARNING):
    scores = scoring.score(lambda x: tf.zeros(tf.shape(x)[:1]), files)
  assert f'{CORRUPT} (1 skipped so far)' in caplog.text
  assert files.size == 101 and len(scores) == len(scores.images) == 100
  assert source.paths[files.size - 1] == CORRUPT
  assert list(scores.index) == list(range(100))  # All but the corrupt one.


def readme_recipe(saved_model, images, u):
  """The README's scoring through the SavedModel, without tf_realnvp."""
  d = images[0].size
  x = np.minimum(images + u, np.nextafter(np.float32(256), np.float32(0)))
  bits_per_dim = -saved_model.log_prob(x).numpy() / (d * np.log(2))
  png_bytes = [len(tf.io.encode_png(image, compression=9).numpy())
               for image in images]
  return bits_per_dim - 8 * np.array(png_bytes) / d


def test_scoring_through_the_saved_model_equals_the_package(run):
  model_dir, _ = run
  _, flow, _ = evaluation.restore_flow(model_dir)
  saved_model = tf.saved_model.load(os.path.join(model_dir, 'saved_model'))
  images = ood_folders.smooth_fields(12, SIZE, 1, seed=7)
  package = scoring.score(flow, images, num_dequantizations=2, batch_size=5)
  through_saved_model = scoring.score(saved_model, images,
                                      num_dequantizations=2, batch_size=5)
  np.testing.assert_allclose(through_saved_model.corrected, package.corrected,
                             atol=1e-4)
  u = np.random.default_rng(0).random(images.shape, np.float32)
  x = np.minimum(images + u, np.nextafter(np.float32(256), np.float32(0)))
  expected = (objective.nats_to_bits_per_dim(-flow.log_prob(x).numpy(),
                                             images.shape[1:])
              - scoring.png_bits_per_dim(images))
  np.testing.assert_allclose(readme_recipe(saved_model, images, u), expected,
                             atol=1e-4)


@pytest.fixture(scope='module')
def evaluated(run):
  """`evaluate.py`'s result on the run: one dequantization draw."""
  return evaluation.evaluate(run[0])


def test_scoring_gives_the_test_figure_of_evaluate(evaluated, summaries):
  """The same stream, noise and objective: the test split's mean score
  summary is eval.json's test bits/dim, to float32 round-off."""
  assert summaries['held_out']['test_mean_bits_per_dim'] == pytest.approx(
      evaluated['test_bits_per_dim'], rel=1e-6)


def test_evaluate_draws_the_manifold_of_four_test_images(evaluated):
  result = evaluated
  grid = tf.io.decode_png(tf.io.read_file(result['manifold'])).numpy()
  side = evaluation.figures.MANIFOLD_SIDE * SIZE
  assert grid.shape == (side, side, 1)


@pytest.mark.parametrize('dataset, score_batch, message', [
    ('folder:/no/such/folder', None,
     '--score=folder:/no/such/folder: no such folder: /no/such/folder'),
    ('moons', None, '--score=moons: its examples are 2, the run models 16x16x1'),
    ('folder:HELD_OUT', 0, '--score_batch must be at least 1'),
    ('folder:HELD_OUT', 101, '--score_batch=101 exceeds the 100 examples'),
])
def test_bad_input_is_one_line_and_exit_code_2(run, capsys, monkeypatch,
                                               dataset, score_batch, message):
  """As `evaluate.py` runs `score_run`: `console.exit_on_errors` with
  `ConfigError` as exit code 2, before any example is scored."""
  model_dir, folders = run
  dataset = dataset.replace('HELD_OUT', folders['held_out'])
  monkeypatch.setattr(scoring, 'score',
                      lambda *args, **kwargs: pytest.fail('scored first'))
  with pytest.raises(SystemExit) as exit_info:
    console.exit_on_errors(scoring.score_run, {experiment.ConfigError: 2})(
        model_dir, dataset, score_batch=score_batch)
  assert exit_info.value.code == 2
  stderr = capsys.readouterr().err
  assert stderr.startswith(f'error: {message}') and stderr.count('\n') == 1
