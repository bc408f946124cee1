"""The checks of the settings, each a `ConfigError` naming what to do."""

from tf_realnvp import flows
from tf_realnvp import recompute
from tf_realnvp.config import settings as config_lib
from tf_realnvp.config.settings import ConfigError
from tf_realnvp.flows import realnvp

# The values each enumerated setting takes.
CHOICES = dict(
    flow=tuple(flows.FLOWS),
    dequantization=realnvp.DEQUANTIZATIONS,
    recompute=recompute.MODES,
    batch_norm=config_lib.BATCH_NORMS,
    lr_decay=config_lib.LR_DECAYS,
    strategy=config_lib.STRATEGIES,
    preset=config_lib.PRESETS,
)

# Config fields that shape the network, and the `make_flow` setting each is.
MODEL_FIELDS = dict(num_scales='num_scales', num_res_blocks='num_res_blocks',
                    num_filters='num_filters',
                    num_coupling_layers='num_layers',
                    hidden_units='hidden_units', spline_bins='spline_bins',
                    spline_bound='spline_bound',
                    dequantization='dequantization')
# Settings that must be at least 1, and those that must be at least 0.
AT_LEAST_ONE = ('batch_size', 'train_steps', 'num_scales', 'num_res_blocks',
                'num_filters', 'num_coupling_layers', 'log_every',
                'eval_every', 'checkpoint_every', 'keep_checkpoints',
                'eval_batches', 'max_bad_steps', 'image_size')
AT_LEAST_ZERO = ('warmup_steps', 'l2')


def _check_at_least(config, names, bound):
  """Raises a `ConfigError` for the first setting of `names` below `bound`
  (one left unset, `None`, passes)."""
  for name in names:
    value = getattr(config, name)
    if value is not None and value < bound:
      raise ConfigError(f'--{name} must be at least {bound}, got {value}.')


def check_values(config):
  for name, choices in CHOICES.items():
    if getattr(config, name) not in choices + (None,):
      raise ConfigError(f'--{name} must be one of {", ".join(choices)}; got '
                        f'{getattr(config, name)!r}.')
  _check_at_least(config, AT_LEAST_ONE, 1)
  _check_at_least(config, AT_LEAST_ZERO, 0)
  if config.channels not in (None, 1, 3):
    raise ConfigError(f'--channels must be 1 or 3, got {config.channels}.')
  if config.hidden_units is not None and (
      not config.hidden_units or min(config.hidden_units) < 1):
    raise ConfigError('--hidden_units must be one or more widths of at least '
                      f'1, got {",".join(map(str, config.hidden_units))!r}.')
  for name in ('learning_rate', 'clip_norm', 'epochs', 'spline_bound'):
    value = getattr(config, name)
    if value is not None and not value > 0:
      raise ConfigError(f'--{name} must be positive, got {value}.')
  if config.spline_bins is not None and config.spline_bins < 2:
    raise ConfigError(f'--spline_bins must be at least 2, got '
                      f'{config.spline_bins}.')


def check_model(config, data):
  """Raises if the flow cannot model the data or would ignore a setting."""
  kind = flows.FLOWS[config.flow]
  what = f'{config.flow} on {config.dataset}'
  if data.is_image and kind.images is None:
    image_flows = ', '.join(name for name, other in flows.FLOWS.items()
                            if other.images is not None)
    raise ConfigError(f'--flow={config.flow} models vectors only; for '
                      f'{config.dataset} choose one of {image_flows}.')
  accepted = kind.settings(data.event_shape)
  unused = ignored_settings(config, data)
  if unused:
    raise ConfigError(f'--{unused[0]} does not apply to {what}; leave it '
                      'unset.')
  if config.jit and config.flow == 'ffjord':
    # Its ODE solver's gradient loops accumulate into lists of unknown size.
    raise ConfigError(f'--jit does not apply to {what}: XLA cannot compile '
                      'its ODE solver; leave it unset.')
  if config.batch_norm != 'none':
    needs = ('conditioner_options' if config.batch_norm == 'networks'
             else 'batch_norm_couplings')
    if needs not in accepted or (config.batch_norm == 'both'
                                 and 'conditioner_options' not in accepted):
      raise ConfigError(
          f'--batch_norm={config.batch_norm} does not apply to {what}'
          + ('; for 2-D data use --batch_norm=couplings.'
             if 'batch_norm_couplings' in accepted else '.'))
  if config.recompute != 'none':
    if 'recompute' not in accepted:
      raise ConfigError(f'--recompute applies to the couplings of realnvp, '
                        f'nice, nsf and glow, not to {what}; leave it unset.')
    if (config.recompute == 'invertible'
        and config.batch_norm in config_lib.BATCH_NORM_AFTER_COUPLINGS):
      raise ConfigError(
          f'--recompute=invertible cannot rebuild the input of the '
          f'--batch_norm={config.batch_norm} layers, which normalize with '
          "that input's statistics; use --recompute=networks.")
  if config.mixed_precision and 'network_dtype' not in accepted:
    raise ConfigError(f'--mixed_precision applies to the coupling networks of '
                      f'realnvp, nice, nsf and glow, not to {what}.')
  if config.conditional and 'num_classes' not in accepted:
    raise ConfigError(f'--conditional applies to realnvp, nice, nsf and '
                      f'glow, not to {config.flow}.')
  if config.conditional and not data.num_classes:
    raise ConfigError(f'--conditional needs class labels, and {config.dataset}'
                      ' has none; leave it unset.')


def check_scales_fit(config, data):
  if data.is_image:
    try:
      flows.check_scales(data.event_shape, config.num_scales)
    except ValueError as error:
      raise ConfigError(f'--num_scales: {error}') from None


def check_recipe(config):
  if not 0. <= config.lr_decay_floor <= 1.:
    raise ConfigError('--lr_decay_floor is a fraction of --learning_rate in '
                      f'[0, 1], got {config.lr_decay_floor}.')
  if not 0. <= config.ema_decay < 1.:
    raise ConfigError('--ema_decay must be in [0, 1) (0: no averaging), got '
                      f'{config.ema_decay}.')


def check_data_settings(config, source):
  """Refuses the data settings that the dataset (`source`) does not use."""
  if config.image_size is not None and not source.resizes:
    raise ConfigError(
        f'--image_size applies to datasets whose images are cropped and '
        f'resized (celeb_a, lsun, downsampled_imagenet, folder:), not to '
        f'{config.dataset}, whose images are '
        f'{"x".join(map(str, source.event_shape))}; leave it unset.')
  if config.channels is not None and not source.is_folder:
    raise ConfigError(f'--channels applies to folder: datasets, not to '
                      f'{config.dataset}; leave it unset.')


def ignored_settings(config, source):
  """The fields `config` sets that its dataset (its `source`) and flow would
  not use."""
  kind = flows.FLOWS[config.flow]
  unused = [field for field, argument in MODEL_FIELDS.items()
            if getattr(config, field) is not None
            and argument not in kind.settings(source.event_shape)]
  if config.image_size is not None and not source.resizes:
    unused.append('image_size')
  if config.channels is not None and not source.is_folder:
    unused.append('channels')
  return unused


def check_replicas(config, replicas):
  """The checks of a run's settings against the replicas it trains on,
  known once the strategy is made."""
  if (replicas > 1 and config.recompute != 'none'
      and config.batch_norm in config_lib.BATCH_NORM_IN_NETWORKS):
    raise ConfigError(
        f'--recompute={config.recompute} with --batch_norm='
        f'{config.batch_norm} needs one device: the recomputed batch '
        f'statistics of {replicas} replicas would be synchronized in the '
        'backward pass, which MirroredStrategy cannot order. Use '
        '--recompute=none or --batch_norm=none.')


def check_evaluation(config):
  """The checks of an `EvaluationConfig`."""
  _check_at_least(config, ('num_dequantizations', 'importance_samples',
                           'eval_batches', 'score_batch'), 1)
  if not config.temperature > 0:
    raise ConfigError(
        f'--temperature must be positive, got {config.temperature}.')
  if config.score is not None and (config.export or config.export_formats):
    raise ConfigError('--score scores a dataset and exports nothing: run '
                      'evaluate.py without --score to export.')
