"""Smoke test of `python -m benchmarks.benchmark` and checks of its counts."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import curves
from benchmarks import flops
from benchmarks import models
from benchmarks import photo_patches
import tf_realnvp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ('sample', 'log_prob', 'train')


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  """The JSON and Markdown of one quick run: both flows, mixed precision,
  the one-scale smoke model and a one-level Glow (a quarter of the quick
  run's variables to trace)."""
  out_dir = tmp_path_factory.mktemp('benchmark')
  subprocess.run(
      [sys.executable, '-m', 'benchmarks.benchmark', '--quick',
       '--models=micro', '--glow_blocks=1', '--precisions=mixed_bfloat16',
       '--xla=false', f'--out_dir={out_dir}'],
      cwd=ROOT, check=True, capture_output=True, timeout=600)
  with open(out_dir / 'benchmark.json') as f:
    result = json.load(f)
  return result, (out_dir / 'benchmark.md').read_text()


def _is_positive_number(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_report_names_machine_versions_and_command(report):
  result, markdown = report
  machine = result['machine']
  for key in ('cpu', 'device', 'tensorflow', 'tensorflow_probability',
              'keras', 'date'):
    assert machine[key], key
  assert machine['tensorflow'] == tf.__version__
  assert _is_positive_number(machine['cpu_cores'])
  assert result['command'].startswith('python -m benchmarks.benchmark --quick')
  assert result['command'] in markdown
  assert machine['cpu'] in markdown


def test_ceiling_and_every_timing_are_finite_and_positive(report):
  result, _ = report
  assert [(r['flow'], r['precision'], r['xla']) for r in result['results']] == [
      ('realnvp', 'mixed_bfloat16', False), ('glow', 'mixed_bfloat16', False)]
  for row in result['results']:
    for key in ('parameters', 'forward_flops_per_image', 'build_s',
                'ceiling_flops_per_s'):
      assert _is_positive_number(row[key]), key
    for phase in PHASES:
      figures = row[phase]
      for key in ('images', 'seconds', 'images_per_s', 'flops_per_image',
                  'share_of_ceiling', 'peak_rss_mib'):
        assert _is_positive_number(figures[key]), (phase, key)
      # CPU allocator stats skip small tensors: the micro model may read 0.
      assert math.isfinite(figures['peak_tensor_mib'])
      assert figures['peak_tensor_mib'] >= 0
      assert figures['compile_s'] >= 0
      assert figures['finite_output'] is True
    assert all(_is_positive_number(v)
               for v in row['profiled_flops_per_image'].values())


def test_glow_is_sized_like_realnvp(report):
  result, _ = report
  realnvp, glow = result['results']
  assert 0.75 < glow['parameters'] / realnvp['parameters'] < 1.25
  assert set(glow['architecture']) == {
      'num_glow_blocks', 'num_steps_per_block', 'num_hidden'}
  assert 'micro: RealNVP / Glow, mixed_bfloat16, XLA off' in result['ratios']


def test_markdown_has_one_row_per_setting(report):
  result, markdown = report
  rows = [line for line in markdown.splitlines() if line.startswith('| micro ')]
  assert len(rows) == len(result['results'])
  assert '| micro | glow |' in rows[1]


def test_glow_parameter_formula_matches_built_glow():
  event_shape = (8, 8, 3)
  flow = models.glow(event_shape, 3000, num_blocks=2, steps_per_block=2,
                     precision='float32', seed=0)
  assert flow.parameters == models.glow_parameters(
      event_shape, 2, 2, flow.settings['num_hidden'])


def test_hand_flop_count_matches_profiler():
  """Convolutions are nearly all of RealNVP's FLOPs (TF counts the rest)."""
  event_shape = (32, 32, 3)
  settings = models.ARCHITECTURES['small']
  flow = tf_realnvp.RealNVP(event_shape, **settings)
  log_prob = tf.function(flow.log_prob).get_concrete_function(
      tf.TensorSpec((1,) + event_shape, tf.float32))
  hand = flops.realnvp_forward_flops(event_shape, **settings)
  assert hand <= flops.profiled_flops(log_prob) < 1.02 * hand


def test_photo_is_matplotlibs_sample_photograph():
  image = photo_patches.photo()
  assert image.shape == (600, 512, 3) and image.dtype == np.uint8


def _position_coded_image(height, width):
  """An image whose pixels spell their own `(row, column)`."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  return np.stack([rows % 256, cols % 256, 16 * (rows // 256) + cols // 256],
                  axis=-1).astype(np.uint8)


def _positions(patches):
  """`(rows, columns)` of each pixel of patches of a position-coded image."""
  patches = np.asarray(patches, np.int64)
  return (patches[..., 0] + 256 * (patches[..., 2] // 16),
          patches[..., 1] + 256 * (patches[..., 2] % 16))


def _tile_colours(patches):
  """The checkerboard colour of the tile under each pixel of `patches`."""
  rows, cols = _positions(patches)
  return (rows // photo_patches.TILE + cols // photo_patches.TILE) % 2


def test_photo_test_patches_share_no_pixel_with_training_crops():
  """Training crops lie in one colour of tiles, test patches in the other."""
  image = _position_coded_image(600, 512)
  tiles, test = photo_patches.split_photo(image, 32, 100)
  assert tiles.shape == (36, 64, 64, 3) and test.shape == (100, 32, 32, 3)
  crops = photo_patches.random_patches(tiles, 500, 32, tf.constant([0, 1]))
  assert crops.shape == (500, 32, 32, 3)
  assert np.all(_tile_colours(crops) == 0)
  assert np.all(_tile_colours(test) == 1)
  # Both sets spread over the whole picture, not one region of it.
  for patches in (crops, test):
    rows, _ = _positions(np.asarray(patches)[:, 0, 0])
    assert rows.min() < 64 and rows.max() > 600 - 2 * 64
  assert len({patch.tobytes() for patch in test}) == len(test)


def test_photo_patches_reject_patches_larger_than_a_tile():
  with pytest.raises(ValueError, match='tile'):
    photo_patches.split_photo(photo_patches.photo(), 65, 4)


def test_precision_check_runs_both_precisions_end_to_end(tmp_path):
  subprocess.run(
      [sys.executable, '-m', 'benchmarks.precision_check', '--model=micro',
       '--patch_size=8', '--steps=2', '--batch_size=4', '--test_patches=4',
       '--seeds=0,1',
       f'--out_dir={tmp_path}'], cwd=ROOT, check=True, capture_output=True,
      timeout=300)
  with open(tmp_path / 'precision_check.json') as f:
    result = json.load(f)
  assert [seed['seed'] for seed in result['seeds']] == [0, 1]
  differences = []
  for seed in result['seeds']:
    float32, mixed, control = seed['runs']
    assert (float32['precision'], mixed['precision'],
            control['precision']) == ('float32', 'mixed_bfloat16', 'float32')
    for run in seed['runs']:
      assert 0. < run['test_bits_per_dim'] < 16.
      assert _is_positive_number(run['train_images_per_second'])
    assert seed['bits_per_dim_difference'] == pytest.approx(
        mixed['test_bits_per_dim'] - float32['test_bits_per_dim'])
    assert seed['control_difference'] == pytest.approx(
        control['test_bits_per_dim'] - float32['test_bits_per_dim'])
    differences.append(seed['bits_per_dim_difference'])
  # Different seeds start from different weights: different results.
  assert (result['seeds'][0]['runs'][0]['test_bits_per_dim']
          != result['seeds'][1]['runs'][0]['test_bits_per_dim'])
  assert result['bits_per_dim_difference']['mean'] == pytest.approx(
      np.mean(differences))
  assert result['bits_per_dim_difference']['std'] == pytest.approx(
      np.std(differences, ddof=1))
  assert 'mixed_bfloat16' in (tmp_path / 'precision_check.md').read_text()


def test_quality_trains_configurations_on_the_same_batches_and_caches(
    tmp_path):
  """Two seeds of a tiny model: figures per evaluation step, a table at equal
  steps and one at equal time; a second call reuses every cached run."""
  command = [sys.executable, '-m', 'benchmarks.quality', '--configs=default',
             '--seeds=0,1', '--eval_at=1,2', '--num_scales=1',
             '--num_res_blocks=1',
             '--num_filters=4', '--batch_size=4', '--test_patches=8',
             f'--out_dir={tmp_path}']
  subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                 timeout=300)
  with open(tmp_path / 'quality.json') as f:
    result = json.load(f)
  runs = result['runs']['default']
  assert len(runs) == 2
  for run in runs:
    assert sorted(run['bits_per_dim']) == ['1', '2']
    assert all(0. < v < 16. for v in run['bits_per_dim'].values())
    assert _is_positive_number(run['seconds_per_step'])
  assert runs[0]['bits_per_dim'] != runs[1]['bits_per_dim']
  table = (tmp_path / 'quality.md').read_text()
  mean = np.mean([run['bits_per_dim']['2'] for run in runs])
  assert f'{mean:.3f} ± ' in table and 'equal wall-clock time' in table
  # Alone, the configuration paces itself: it takes its own time.
  assert '| default | ' in table.split('Time to quality')[1]
  assert '| 1.00 ± 0.00 | 2 of 2 |' in table
  cached = sorted(os.listdir(tmp_path / 'cache'))
  assert len(cached) == 2
  subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                 timeout=300)
  with open(tmp_path / 'quality.json') as f:
    assert json.load(f)['runs']['default'] == runs
  assert sorted(os.listdir(tmp_path / 'cache')) == cached


def test_time_to_reach_interpolates_between_evaluations():
  run = dict(bits_per_dim={50: 5.0, 100: 4.5, 200: 4.0}, seconds_per_step=0.5)
  # 4.25 is halfway from step 100 to 200: step 150, 75 s.
  assert curves.time_to_reach(run, 4.25) == pytest.approx(75.)
  assert curves.time_to_reach(run, 6.) == pytest.approx(25.)  # At step 50.
  assert curves.time_to_reach(run, 3.9) is None
