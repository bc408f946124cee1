"""The settings of a run resolved: the defaults that adapt to the data, the
flow and the settings given, the settings refused before any data is read
(`config/checks.py`), and `config.json` read back."""

import json

import numpy as np
import pytest
from runs import small_config

from tf_realnvp import config as config_lib
from tf_realnvp.config import experiment
from tf_realnvp.config import presets

@pytest.mark.parametrize('settings, expected', [
    # The recipe's 200 warmup steps, at most a tenth of the run.
    (dict(train_steps=100), dict(warmup_steps=10, lr_decay='cosine')),
    (dict(train_steps=6000), dict(warmup_steps=200, lr_decay='cosine')),
    (dict(), dict(warmup_steps=200, train_steps=3000)),
    (dict(dataset='8gaussians', train_steps=30), dict(warmup_steps=3)),
    (dict(flow='realnvp', train_steps=50), dict(warmup_steps=5)),
    # The length from --epochs: 0.05 of 100,000 points in batches of 512.
    (dict(dataset='circles', epochs=0.05), dict(warmup_steps=1,
                                                train_steps=None)),
    (dict(lr_decay='cosine', train_steps=5), dict(warmup_steps=0)),
    # A warmup given: a default decay yields, then a default length.
    (dict(warmup_steps=300, train_steps=100), dict(lr_decay='none')),
    (dict(warmup_steps=300), dict(lr_decay='cosine', train_steps=3000)),
    (dict(lr_decay='cosine', warmup_steps=7000),
     dict(train_steps=10000, lr_decay='cosine')),
    # Images: the paper's constant rate does not depend on the length.
    (dict(dataset='cifar10', train_steps=5), dict(warmup_steps=0,
                                                  lr_decay='none')),
])
def test_defaults_adapt_to_the_settings_given(settings, expected):
  resolved = experiment.resolve(config_lib.Config(**settings)).config
  assert {name: getattr(resolved, name) for name in expected} == expected
  assert resolved.given == tuple(sorted(settings))


@pytest.mark.parametrize('settings, message', [
    (dict(lr_decay='cosine', warmup_steps=40, train_steps=40),
     '--warmup_steps=40 leaves none of the --train_steps=40'),
    (dict(dataset='circles', lr_decay='cosine', warmup_steps=40,
          epochs=0.05),
     r'--warmup_steps=40 leaves none of the --epochs=0.05 \(10 steps\)'),
])
def test_only_settings_given_conflict(settings, message):
  with pytest.raises(experiment.ConfigError, match=message):
    experiment.resolve(config_lib.Config(**settings))


@pytest.mark.parametrize('change, message', [
    (dict(dataset='nosuch'), "--dataset=nosuch: Unknown dataset 'nosuch'"),
    (dict(dataset='cifar10', flow='maf'), 'flow=maf.*cifar10.*realnvp'),
    (dict(flow='spline'), "flow must be one of realnvp.*'spline'"),
    (dict(num_scales=3), 'num_scales does not apply to realnvp on moons'),
    (dict(flow='ffjord', num_coupling_layers=4),
     'num_coupling_layers does not apply to ffjord'),
    (dict(flow='ffjord', num_coupling_layers=None, jit=True),
     '--jit does not apply to ffjord on moons: XLA cannot compile'),
    (dict(dataset='cifar10', num_coupling_layers=None, hidden_units=(8,)),
     'hidden_units does not apply to realnvp on cifar10'),
    (dict(dataset='cifar10', num_coupling_layers=None, hidden_units=None,
          num_scales=6), 'num_scales.*too small'),
    (dict(dataset='cifar10', num_coupling_layers=None, hidden_units=None,
          image_size=64), 'image_size applies to datasets whose images are'),
    (dict(flow='ffjord', num_coupling_layers=None, mixed_precision=True),
     'mixed_precision.*ffjord'),
    (dict(batch_size=0), 'batch_size must be at least 1, got 0'),
    (dict(channels=2), '--channels must be 1 or 3, got 2'),
    (dict(hidden_units=(8, 0)), 'hidden_units'),
    (dict(learning_rate=-1.), 'learning_rate must be positive'),
    (dict(clip_norm=0.), 'clip_norm must be positive'),
    (dict(checkpoint_every=0), 'checkpoint_every must be at least 1'),
    (dict(warmup_steps=-1), 'warmup_steps must be at least 0'),
    (dict(lr_decay='linear'), 'lr_decay must be one of none, cosine'),
    (dict(lr_decay_floor=1.5), 'lr_decay_floor'),
    (dict(ema_decay=1.), r'ema_decay must be in \[0, 1\)'),
    (dict(ema_decay=-0.5), 'ema_decay'),
    (dict(lr_decay='cosine', warmup_steps=40, train_steps=40), 'warmup_steps'),
    (dict(batch_norm='layers'), 'batch_norm must be one of none, networks'),
    (dict(batch_norm='networks'),
     'batch_norm=networks does not apply to realnvp on moons.*couplings'),
    (dict(flow='maf', batch_norm='couplings'),
     'batch_norm=couplings does not apply to maf'),
    (dict(spline_bins=1), 'spline_bins must be at least 2, got 1'),
    (dict(dequantization='learned'),
     'dequantization must be one of uniform, variational'),
    (dict(spline_bound=0.), 'spline_bound must be positive'),
    (dict(flow='realnvp', spline_bins=8),
     'spline_bins does not apply to realnvp on moons'),
])
def test_unusable_settings_are_rejected_before_any_data(tmp_path, change,
                                                        message):
  with pytest.raises(experiment.ConfigError, match=message):
    experiment.resolve(small_config(tmp_path, **change))


def test_resolve_fills_the_defaults_of_the_data_and_the_flow():
  moons = experiment.resolve(config_lib.Config()).config
  assert (moons.batch_size, moons.train_steps, moons.eval_every) == (
      presets.VECTOR_DEFAULTS['batch_size'],
      presets.VECTOR_DEFAULTS['train_steps'],
      presets.VECTOR_DEFAULTS['eval_every'])
  assert moons.flow == presets.VECTOR_DEFAULTS['flow'] == 'nsf'
  assert moons.learning_rate == presets.VECTOR_FLOW_DEFAULTS['nsf']['learning_rate']
  assert (moons.num_coupling_layers, moons.hidden_units, moons.spline_bins,
          moons.spline_bound) == (4, (64, 64), 16, 6.)
  # XLA: on for nsf on 2-D data; left to the hardware otherwise (the
  # trainer: on with GPUs, off on the CPU).
  assert moons.jit is True
  affine = experiment.resolve(config_lib.Config(flow='realnvp')).config
  assert affine.learning_rate == presets.VECTOR_FLOW_DEFAULTS['realnvp'][
      'learning_rate']
  assert (affine.num_coupling_layers, affine.hidden_units) == (8, (128, 128))
  assert affine.spline_bins is None and affine.jit is None
  assert moons.num_scales is None and moons.image_size is None
  cifar = experiment.resolve(config_lib.Config(dataset='cifar10'))
  assert (cifar.config.batch_size, cifar.config.epochs) == (64, 100)
  assert (cifar.config.num_scales, cifar.config.num_res_blocks,
          cifar.config.num_filters) == (2, 8, 64)
  assert cifar.config.hidden_units is None and cifar.config.jit is None
  assert cifar.config.dequantization == presets.IMAGE_DEFAULTS[
      'dequantization'] == 'uniform'
  assert moons.dequantization is None
  assert cifar.config.learning_rate == 1e-3 and cifar.config.flow == 'glow'
  assert cifar.data.event_shape == (32, 32, 3) and cifar.data.is_image
  assert cifar.metric(32 * 32 * 3 * np.log(2.)) == pytest.approx(1.)
  maf = experiment.resolve(config_lib.Config(flow='maf')).config
  assert maf.num_coupling_layers == 5 and maf.learning_rate == 1e-3
  celeb_a = experiment.resolve(config_lib.Config(dataset='celeb_a'))
  assert celeb_a.data.event_shape == (32, 32, 3)


def test_a_run_recorded_with_every_field_still_loads(tmp_path):
  """Before the settings a flow ignores were refused, config.json had every
  field, e.g. num_scales for a 2-D run."""
  config = experiment.resolve(small_config(tmp_path)).config
  config.save(str(tmp_path))
  path = tmp_path / 'config.json'
  path.write_text(json.dumps(dict(json.loads(path.read_text()), num_scales=2,
                                  num_res_blocks=8, num_filters=64,
                                  image_size=32)))
  loaded = experiment.load(str(tmp_path)).config
  assert loaded == config
