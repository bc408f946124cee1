"""A new user's first tweaks: every flag of train.py, one at a time, with a
non-default value, on the 2-D default and on a mock image dataset, with a
short run, either trains or stops with its one-line `ConfigError`.

The cases are generated from the flags (`config.flag_fields`, what train.py
defines), so a new flag is covered without editing this file: its value is
made from its type (`tweak`), unless `VALUES` names a better one, and it is
trained unless `RESOLVED_ONLY` says why resolving it suffices. Everything
runs in process, on tiny models, for 2 steps and one test batch.
"""

import contextlib
import typing

import pytest
import tensorflow_datasets as tfds
from runs import TINY_IMAGE_MODEL

from tf_realnvp import config as config_lib
from tf_realnvp import training
from tf_realnvp.config import checks
from tf_realnvp.config import experiment

DATASETS = {
    # The 2-D default (moons, nsf), small, its step not compiled by XLA (in
    # 2 steps the compilation would be most of the time; `2d-jit` compiles).
    '2d': dict(num_coupling_layers=2, hidden_units=(8,), jit=False),
    # Mock MNIST (16 images per split), a one-scale model.
    'image': dict(dataset='mnist', batch_size=8, **TINY_IMAGE_MODEL),
}
SHORT = dict(train_steps=2, eval_batches=1, export=False)
MOCK_EXAMPLES = 16

# Values better than the one `tweak` makes from the type, per dataset kind.
VALUES = {
    'dataset': {'2d': 'circles', 'image': 'cifar10'},
    'epochs': {'2d': 0.01, 'image': 1.},  # 2 steps of 512 points; 2 of 8.
    'learning_rate': 1e-4,
    'spline_bound': 3.,
    'hidden_units': (16, 16),
    'num_scales': 2,
}
# Other values worth their own case: the strategies that need a cluster or
# GPUs (multi_worker stops with its ConfigError without TF_CONFIG; mirrored
# is resolved only, see `RESOLVED_ONLY`).
MORE_VALUES = {'strategy': ('mirrored', 'multi_worker'),
               'recompute': ('invertible',)}

# Settings resolved only, where resolving checks all there is to check:
# where to write, how often, which numbers the compiled step is given; the
# sizes of a model or a run whose code trains in other cases (its shapes
# change, not its code; two scales train in test_loop's CIFAR-10 test);
# the settings a preset fills in; and the strategy that needs GPUs.
RESOLVED_ONLY = {
    'model_dir', 'data_dir', 'download', 'strict_data', 'log_every',
    'eval_every', 'checkpoint_every', 'keep_checkpoints', 'eval_batches',
    'export', 'restart', 'seed', 'max_bad_steps', 'deterministic', 'l2',
    'clip_norm', 'learning_rate', 'lr_decay_floor', 'random_flip',
    'num_scales', 'num_res_blocks', 'num_filters', 'num_coupling_layers',
    'hidden_units',
    'spline_bins', 'spline_bound', 'warmup_steps', 'batch_size',
    'train_steps', 'preset', ('strategy', 'mirrored'),
    # The trainer runs either mode's custom gradient alike: invertible trains.
    ('recompute', 'networks'),
}
# The recipe is the same code on any data: it trains on 2-D data, and is
# resolved on images; the 2-D length from --epochs is a constant's multiple
# (images count their split). A learned dequantization trains in
# test_loop's `dequantized_runs`; recomputation trains on images here and
# on 2-D flows in tests/test_recompute.py.
RESOLVED_ON = {'image': {'lr_decay', 'ema_decay', 'jit', 'strategy',
                         'dequantization'},
               '2d': {'epochs', 'recompute'}}


def tweak(field, kind, default_config):
  """A non-default value of `field` for dataset kind `kind`."""
  if field.name in VALUES:
    value = VALUES[field.name]
    return value[kind] if isinstance(value, dict) else value
  if field.name in checks.CHOICES:
    # The first choice other than the value the run would take.
    current = getattr(default_config, field.name)
    return next(choice for choice in checks.CHOICES[field.name]
                if choice != current)
  hint = typing.get_type_hints(config_lib.Config)[field.name]
  if typing.get_origin(hint) is typing.Union:  # Optional[X]
    hint = next(a for a in typing.get_args(hint) if a is not type(None))
  default = field.default
  if hint is bool:
    return not default if default is not None else True
  if hint is int:
    return 3 if default is None else default + 1
  if hint is float:
    return 0.5 if not default else default / 2
  if hint is str:
    return 'other'
  return (8,)  # Tuple[int, ...]


def cases():
  for kind in DATASETS:
    default_config = experiment.resolve(
        config_lib.Config(**DATASETS[kind])).config
    for field in config_lib.flag_fields():
      values = ((tweak(field, kind, default_config),)
                + MORE_VALUES.get(field.name, ()))
      for value in values:
        yield pytest.param(kind, field.name, value,
                           id=f'{kind}-{field.name}={value}')


@pytest.mark.parametrize('kind, name, value', list(cases()))
def test_a_flag_trains_or_stops_with_its_one_line_error(
    tmp_path, kind, name, value):
  settings = dict(DATASETS[kind], model_dir=str(tmp_path / 'run'), **SHORT)
  if name in ('model_dir', 'data_dir'):
    value = str(tmp_path / value)
  if name == 'epochs':
    del settings['train_steps']
  settings[name] = value
  image = kind == 'image'
  mock = (tfds.testing.mock_data(num_examples=MOCK_EXAMPLES) if image
          else contextlib.nullcontext())
  resolved_only = (name in RESOLVED_ONLY or (name, value) in RESOLVED_ONLY
                   or name in RESOLVED_ON[kind])
  with mock:
    try:
      run = experiment.resolve(config_lib.Config(**settings))
      if resolved_only:
        assert getattr(run.config, name) == value
        return
      result = training.train_and_evaluate(run)
      assert result['step'] == run.total_steps() > 0
    except config_lib.ConfigError as error:
      message = str(error)
      assert f'--{name}' in message and '\n' not in message, message
      return
  assert result['bad_steps'] == 0
  assert name in run.config.given  # Recorded as the user's choice.
