"""One place decides the run: `resolve(config)` checks and completes it."""

import dataclasses
import inspect
import math
import os

from tf_realnvp import data as data_lib
from tf_realnvp import flows
from tf_realnvp.config import checks
from tf_realnvp.config import hardware
from tf_realnvp.config import presets
from tf_realnvp.config import settings as config_lib
from tf_realnvp.config.settings import ConfigError
from tf_realnvp.flows import objective


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A checked run: its complete config, its data, its flow and its batches."""

  config: config_lib.Config
  data: data_lib.Source

  @property
  def metric_name(self):
    """Images report bits/dim, vectors the NLL in nats."""
    return 'bits_per_dim' if self.data.is_image else 'nll_nats'

  def metric(self, mean_nll):
    """The reported figure of a mean NLL in nats per example."""
    if self.data.is_image:
      return objective.nats_to_bits_per_dim(mean_nll, self.data.event_shape)
    return mean_nll

  def hardware_chooses_precision(self):
    """Whether the hardware decides --mixed_precision when it is left unset:
    for images, with a flow whose networks take a dtype (`network_dtype`).
    2-D data keeps float32, in which its figures are measured."""
    return self.data.is_image and 'network_dtype' in flows.FLOWS[
        self.config.flow].settings(self.data.event_shape)

  def flow_settings(self, float32=False):
    """The `make_flow` settings of the config's model; with `float32`, its
    networks compute in float32 whatever `--mixed_precision` says."""
    config = self.config
    settings = {argument: getattr(config, field)
                for field, argument in checks.MODEL_FIELDS.items()
                if getattr(config, field) is not None}
    if config.batch_norm in config_lib.BATCH_NORM_AFTER_COUPLINGS:
      settings['batch_norm_couplings'] = True
    if config.batch_norm in config_lib.BATCH_NORM_IN_NETWORKS:
      settings['conditioner_options'] = dict(batch_norm=True)
    if config.recompute != 'none':
      settings['recompute'] = config.recompute
    if config.mixed_precision and not float32:
      settings['network_dtype'] = 'mixed_bfloat16'
    if config.conditional:
      settings.update(num_classes=self.data.num_classes,
                      conditional_prior=True)
    if 'validate_args' in flows.FLOWS[config.flow].settings(
        self.data.event_shape):
      # XLA drops run-time checks anyway, and a batch with a NaN must reach
      # the step to be skipped and counted; batches are checked statically.
      settings['validate_args'] = False
    return settings

  def build_flow(self, float32=False):
    """A new flow of the config's kind, with fresh weights, computing in the
    run's precision or, with `float32`, in float32."""
    return flows.make_flow(self.config.flow, self.data.event_shape,
                           **self.flow_settings(float32))

  def float32_flow(self, flow):
    """`flow` (built by `build_flow`) computing in float32, with its current
    weights: the flow every export computes with, whatever the run's
    precision (neither TFLite nor ONNX Runtime takes bfloat16 convolutions).

    That is `flow` itself in a float32 run; after mixed precision, a new
    `build_flow(float32=True)` assigned `flow`'s variables (a mixed policy
    keeps them float32: only the networks' computations differ).
    """
    if not self.config.mixed_precision:
      return flow
    twin = self.build_flow(float32=True)
    if ([(v.shape, v.dtype) for v in twin.variables] !=
        [(v.shape, v.dtype) for v in flow.variables]):
      raise ValueError('The float32 flow has other variables than the flow '
                       f'of the run in {self.config.model_dir}.')
    for variable, value in zip(twin.variables, flow.variables):
      variable.assign(value)
    return twin

  def dataset(self, split, seed_offset=0):
    """Training batches (shuffled, repeated, flipped, cropped) or one pass
    over the test split (`seed_offset` draws other dequantization noise);
    `(x, label)` pairs for a `--conditional` run."""
    config = self.config
    train = split == 'train'
    return data_lib.batches(
        self.data, split, config.batch_size,
        seed=config.seed + seed_offset,
        random_flip=train and config.random_flip and self.data.is_image,
        random_crop=train, shuffle=train, repeat=train, drop_remainder=train,
        labels=config.conditional, strict_data=config.strict_data)

  def steps_per_epoch(self):
    """Training batches per pass over the training split."""
    examples = self.data.num_examples('train')
    return max(1, examples // self.config.batch_size)

  def total_steps(self):
    config = self.config
    if config.train_steps is not None:
      return config.train_steps
    return math.ceil(config.epochs * self.steps_per_epoch())

  def eval_interval(self):
    """Steps between evaluations: --eval_every, else an epoch (images)."""
    if self.config.eval_every is not None:
      return self.config.eval_every
    return self.steps_per_epoch()


def load(model_dir):
  """The `Experiment` of the run in `model_dir`, from its config.json.

  Runs written before the settings a flow ignores were refused recorded
  every field; those are dropped here. The dataset is described once.
  """
  saved = config_lib.Config.load(model_dir)
  checks.check_values(saved)
  source = _describe(saved)
  return _resolve(dataclasses.replace(
      saved, **{field: None for field in checks.ignored_settings(saved, source)}),
                  source)


def resolve(config):
  """Checks `config` and completes it; returns the run's `Experiment`.

  Describes the dataset once (`data.describe`: no images are read; a folder
  is listed and its files' headers read): a bad setting fails here, before
  anything is loaded.

  The rule: a default never overrules a setting the user gave (`given`); it
  adapts to it. Only settings the user gave can conflict, and such a
  conflict is a `ConfigError`. The run's length decides the recipe's
  defaults (`_fit_recipe`); known from `--epochs`, it is counted from the
  training split's size (`Experiment.total_steps`). The hardware decides
  an unset `mixed_precision` of an image run: on where it computes bfloat16
  natively (`hardware.bfloat16_support`), else off. Where the model
  directory holds a run to resume, the model and batch settings left unset
  are that run's (`config.KEPT_ON_RESUME`), not today's defaults.

  The `Experiment` holds the completed config, the dataset (its
  `data.Source`, described once here), the figure the run reports, the flow
  factory and the batches: nothing downstream asks "is this an image
  dataset?" again, nor opens the dataset to ask.

  Raises:
    ConfigError: for a setting that cannot work, with what to do instead.
  """
  checks.check_values(config)
  return _resolve(config, run_on_disk=True)


def _resolve(config, source=None, run_on_disk=False):
  """`resolve`, with the `source` of `config`'s dataset if already made;
  with `run_on_disk`, the settings it leaves unset are first taken from the
  run in its model directory (`_with_settings_on_disk`)."""
  given = config.given_fields()
  config = _with_preset(config)
  if source is None:
    source = _describe(config)
  checks.check_data_settings(config, source)
  if config.model_dir is None:
    config = dataclasses.replace(
        config, model_dir=os.path.join('runs', run_name(source)))
  if run_on_disk:
    config = _with_settings_on_disk(config, source)
  data = source
  defaults = dict(presets.IMAGE_DEFAULTS if data.is_image
                  else presets.VECTOR_DEFAULTS)
  flow = config.flow or defaults['flow']
  defaults.update(presets.PAPER_RECIPE)
  if not data.is_image:
    defaults.update(presets.VECTOR_FLOW_DEFAULTS.get(flow, {}))
  if config.train_steps is not None or config.epochs is not None:
    defaults.pop('train_steps', None)  # The user chose the length.
    defaults.pop('epochs', None)
  if source.resizes:
    defaults.update(image_size=source.default_image_size)
  unset = {name for name in _LENGTH_AND_RECIPE if getattr(config, name) is None}
  resolved = dataclasses.replace(config, given=given, **{
      name: value for name, value in defaults.items()
      if getattr(config, name) is None})
  checks.check_model(resolved, data)
  resolved = dataclasses.replace(resolved,
                                 **_model_defaults(resolved, data.event_shape))
  if resolved.mixed_precision is None:
    resolved.mixed_precision = (
        Experiment(resolved, data).hardware_chooses_precision()
        and hardware.bfloat16_support().native)
  checks.check_scales_fit(resolved, data)
  checks.check_recipe(resolved)
  resolved = _fit_recipe(Experiment(resolved, data), unset)
  return Experiment(resolved, data)


def resumed(experiment, saved):
  """`(experiment, planned_steps)`: the experiment that goes on with the run
  on disk, whose config.json is `saved` (`Config.load`), and the length that
  run was planned for.

  The settings the command leaves to defaults that adapt to the run's length
  or the hardware (`ADAPTIVE_DEFAULT_FIELDS`) keep the run's values; the run's
  `lr_plan` carries over. The length may change (train further; with a
  decay the rest of the schedule is re-planned when training resumes).

  Raises:
    ConfigError: if the command asks for another model, data stream or
      recipe than the run's (`check_resumable`), or for a decayed run's
      length within its warmup.
  """
  config = experiment.config
  given = set(config.given_fields())
  kept = {name: getattr(saved, name)
          for name in config_lib.ADAPTIVE_DEFAULT_FIELDS if name not in given}
  given |= set(saved.given_fields()) & set(kept)
  config = dataclasses.replace(config, lr_plan=saved.lr_plan,
                               given=tuple(given), **kept)
  check_resumable(config, saved, experiment.data)
  resumed_experiment = Experiment(config, experiment.data)
  length = resumed_experiment.total_steps()
  if config.lr_decay != 'none' and length <= config.warmup_steps:
    raise ConfigError(
        f'The run in {config.model_dir} decays its learning rate after a '
        f'warmup of {config.warmup_steps} steps; '
        f'{_length_text(config, length)} ends within it: ask for more '
        'steps, or use another --model_dir.')
  # The same dataset (`check_resumable`): its description serves both.
  planned_steps = Experiment(saved, experiment.data).total_steps()
  return resumed_experiment, planned_steps


def check_resumable(config, saved, data):
  """Raises `ConfigError` if `saved` (the config on disk) has another model,
  data stream or training recipe than `config`. The length may differ.

  Runs written before the settings a flow ignores were refused recorded
  every field: one that `config` leaves unset and that the saved run's
  dataset (`data`) and flow would not use is no difference.
  """
  unused = (checks.ignored_settings(saved, data)
            if saved.flow in flows.FLOWS else [])
  changed = [name for name in config_lib.RESUME_FIELDS
             if getattr(config, name) != getattr(saved, name)
             and not (getattr(config, name) is None and name in unused)]
  if changed:
    details = ', '.join(f'{n}: {getattr(saved, n)!r} on disk, '
                        f'{getattr(config, n)!r} asked' for n in changed)
    raise ConfigError(
        f'The run in {config.model_dir} has other settings ({details}). '
        'Use another --model_dir, or the same settings to resume it.')


def _describe(config):
  """The dataset's `data.Source` (reads no images; lists a folder)."""
  try:
    return data_lib.describe(config.dataset, config.image_size,
                             config.channels, config.data_dir,
                             download=config.download)
  except ValueError as error:
    raise ConfigError(f'--dataset={config.dataset}: {error}') from None


def _with_settings_on_disk(config, source):
  """`config` with the model and batch settings it leaves unset
  (`config_lib.KEPT_ON_RESUME`) taken from the run in its model directory,
  if there is one to resume: a run goes on as it was trained, whatever the
  defaults have become since. Done before the defaults, which depend on the
  flow. (The adaptive defaults are kept after them: `resumed`.)"""
  if config.restart or not os.path.exists(
      os.path.join(config.model_dir, 'config.json')):
    return config
  saved = config_lib.Config.load(config.model_dir)
  if (saved.dataset != config.dataset or saved.flow not in flows.FLOWS
      or config.flow not in (None, saved.flow)):
    return config  # Another run than the one asked: `check_resumable` says.
  unused = checks.ignored_settings(saved, source)
  return dataclasses.replace(config, **{
      name: getattr(saved, name) for name in config_lib.KEPT_ON_RESUME
      if getattr(config, name) is None and name not in unused})


def run_name(source):
  """The dataset's name, or a folder's or file's (`folder:a/photos`: photos)."""
  if source.path is not None:
    path = os.path.normpath(source.path)
    return os.path.splitext(os.path.basename(path))[0]
  return source.name


def _with_preset(config):
  """`config` with the unset fields of its `--preset` filled in."""
  if config.preset == 'none':
    return config
  if config.dataset not in presets.PAPER_PRESETS:
    raise ConfigError(
        f'--preset={config.preset} knows the paper\'s datasets '
        f'({", ".join(presets.PAPER_PRESETS)}), not {config.dataset}; leave '
        'it unset and set the model flags.')
  preset = presets.PAPER_PRESETS[config.dataset]
  return dataclasses.replace(config, **{
      name: value for name, value in preset.items()
      if getattr(config, name) is None})


def _model_defaults(config, event_shape):
  """The builder's defaults of the model fields the flow takes and `config`
  leaves unset, so that config.json records the model that was built."""
  kind = flows.FLOWS[config.flow]
  builder = kind.images if len(event_shape) == 3 else kind.vectors
  parameters = inspect.signature(builder).parameters
  accepted = kind.settings(event_shape)
  return {field: parameters[argument].default
          for field, argument in checks.MODEL_FIELDS.items()
          if argument in accepted and getattr(config, field) is None}


# The length and the recipe settings whose defaults depend on it.
_LENGTH_AND_RECIPE = ('train_steps', 'epochs', 'warmup_steps', 'lr_decay')


def _fit_recipe(experiment, unset):
  """The config with the recipe's defaults fitted to the run's length.

  `unset` names the fields of `_LENGTH_AND_RECIPE` that took defaults. A
  default warmup is at most `presets.WARMUP_SHARE` of the run. A warmup
  given that leaves no step to a decay: a default decay yields (none); with
  the decay given too, a default length yields (the warmup, then the
  default length); with the length given as well, it is a `ConfigError`.
  """
  config = experiment.config
  warmup = config.warmup_steps
  if not warmup or (config.lr_decay == 'none' and
                    'warmup_steps' not in unset):
    return config  # Nothing depends on the length.
  length = experiment.total_steps()
  if 'warmup_steps' in unset:
    return dataclasses.replace(
        config, warmup_steps=min(warmup, int(presets.WARMUP_SHARE * length)))
  if config.lr_decay == 'none' or warmup < length:
    return config
  if 'lr_decay' in unset:
    return dataclasses.replace(config, lr_decay='none')
  if {'train_steps', 'epochs'} <= unset:
    return dataclasses.replace(config, train_steps=warmup + length,
                               epochs=None)
  raise ConfigError(
      f'--lr_decay={config.lr_decay} decays after the warmup: '
      f'--warmup_steps={warmup} leaves none of the '
      f'{_length_text(config, length)}: '
      'set fewer --warmup_steps, or --lr_decay=none.')


def _length_text(config, length):
  """The length setting of `config` as a flag, e.g. `--epochs=0.05 (20 steps)`,
  where `length` is the run's number of steps."""
  if config.train_steps is not None:
    return f'--train_steps={config.train_steps}'
  return f'--epochs={config.epochs:g} ({length} steps)'


