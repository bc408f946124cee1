"""Every setting of train.py and evaluate.py, in one place, with its default."""

import dataclasses
import json
import os
from typing import Optional, Tuple

from tf_realnvp.config import presets


class ConfigError(ValueError):
  """A setting that cannot work; the message names it and what to do."""


# The values of the enumerated settings (the flows: `tf_realnvp.flows.FLOWS`).
BATCH_NORMS = ('none', 'networks', 'couplings', 'both')
# Where each --batch_norm puts batch normalization: inside the s/t networks,
# after the couplings (the BatchNorm bijector).
BATCH_NORM_IN_NETWORKS = ('networks', 'both')
BATCH_NORM_AFTER_COUPLINGS = ('couplings', 'both')
LR_DECAYS = ('none', 'cosine')
STRATEGIES = ('auto', 'one_device', 'mirrored', 'multi_worker')
PRESETS = ('none', 'paper')

# Fields that fix the model, the data stream and the training recipe; a
# resumed run keeps them. The learning rate and the averaging are included
# because a changed value would not be the value of an uninterrupted run: a
# plain learning rate is restored from the checkpoint (the new one would be
# ignored), a schedule is rebuilt from the flags (the rate would jump), and
# the averages change the optimizer's checkpointed variables.
RESUME_FIELDS = (
    'dataset', 'image_size', 'channels', 'flow', 'num_scales',
    'num_res_blocks', 'num_filters', 'num_coupling_layers', 'hidden_units',
    'spline_bins', 'spline_bound', 'batch_size', 'seed',
    'learning_rate', 'warmup_steps', 'lr_decay', 'lr_decay_floor', 'ema_decay',
    'batch_norm', 'conditional', 'dequantization')
# The length of a run (train_steps, epochs) is not among them: a resumed run
# may train further, and a decaying learning rate is then re-planned
# (`training.optimizers`).
# The fields of a resumed run that the command leaves unset and that keep
# the run's values, whatever the defaults have become since: the model's and
# the batch's (not the data's, which the command names). A config.json
# without one of them reads as `ABSENT_FIELD_VALUES` says.
KEPT_ON_RESUME = (
    'flow', 'num_scales', 'num_res_blocks', 'num_filters',
    'num_coupling_layers', 'hidden_units', 'spline_bins', 'spline_bound',
    'batch_size', 'learning_rate', 'dequantization')
# Fields whose defaults adapt, to the run's length (the recipe's warmup and
# decay) or to the hardware (mixed_precision): a resumed run keeps its own
# values of those the command does not give.
ADAPTIVE_DEFAULT_FIELDS = ('warmup_steps', 'lr_decay', 'mixed_precision')
# What a field that a run's config.json lacks (written before the field
# existed) meant then, whatever its default is now. (A 2-D run reads
# dequantization='uniform' too, and drops it as a setting its flow ignores:
# `experiment.load`, `experiment.check_resumable`.)
ABSENT_FIELD_VALUES = dict(warmup_steps=0, lr_decay='none', lr_decay_floor=0.,
                           ema_decay=0., batch_norm='none',
                           mixed_precision=False, dequantization='uniform')


def _field(default, help_text, flag=True):
  return dataclasses.field(default=default,
                           metadata={'help': help_text, 'flag': flag})


def flag_fields(config_class=None):
  """The fields of `Config` that are flags of `train.py` (all but the
  records a run writes itself)."""
  return [field for field in dataclasses.fields(config_class or Config)
          if field.metadata.get('flag', True)]


@dataclasses.dataclass
class Config:
  """Settings of a RealNVP training run.

  `train.py` turns each field into an absl flag of the same name, and a run
  writes its config to `model_dir/config.json`, which `evaluate.py` and a
  resumed run read back. A field left `None` takes a default that depends on
  the dataset or the flow; `tf_realnvp.config.experiment.resolve` checks
  the settings and fills those in. This module knows no model code.

  Which settings the user gave and which came from defaults is recorded in
  `given` (a default adapts to what the user gave, never the other way round;
  see `resolve`): `train.py` lists the flags present on its command line; a
  `Config(...)` built in Python counts the fields whose value differs from the
  field's default here (for the fields defaulting to `None`: those set).
  """

  # Data.
  dataset: str = _field(
      'moons', 'Dataset: a 2-D toy (moons, circles, checkerboard, spirals, '
      '8gaussians), generated in code; any tensorflow-datasets image dataset '
      'by name with its config (cifar10, celeb_a, mnist, svhn_cropped, '
      'downsampled_imagenet/64x64, lsun/bedroom, ...); folder:PATH, PNG/JPEG '
      'files with one subfolder per class (10% held out for testing by a '
      'hash of the path); or npz:FILE, uint8 arrays train and test '
      '(optional train_labels, test_labels).')
  data_dir: Optional[str] = _field(
      None, 'tensorflow-datasets data directory (default: ~/tensorflow_datasets).')
  download: bool = _field(
      True, 'Download a tensorflow-datasets dataset that is not in --data_dir.')
  image_size: Optional[int] = _field(
      None, 'Datasets whose images are cropped and resized (celeb_a, lsun, '
      'downsampled_imagenet, folder:): side of the square (default: the '
      'config\'s size, e.g. 64 for downsampled_imagenet/64x64, else 32).')
  channels: Optional[int] = _field(
      None, 'folder: 1 (grayscale) or 3 (colour), converting the images of '
      'the other kind (default: 3 if any image is in colour, the grayscale '
      'ones converted to RGB, else 1).')
  strict_data: bool = _field(
      False, 'Stop at an unreadable image file of a folder instead of '
      'skipping it (each skipped file is logged and counted).')
  preset: str = _field(
      'none', 'paper: the settings the paper used for this dataset (Dinh et '
      'al. 2017, Sec. 4.1): its flow (realnvp), scales, residual blocks, '
      'feature maps, image size and batch size, for cifar10, '
      'downsampled_imagenet/32x32 and 64x64, lsun/bedroom, lsun/tower, '
      'lsun/church_outdoor and celeb_a; flags given explicitly win.')
  random_flip: bool = _field(True, 'Images: random horizontal flips in training.')

  # Model: settings of tf_realnvp.make_flow; unset, the flow's own default.
  # A setting the chosen flow would not use is refused.
  flow: Optional[str] = _field(
      None, 'realnvp (affine couplings), nice (additive couplings), nsf '
      '(rational-quadratic spline couplings) or glow (actnorm, invertible 1x1 '
      'convolution, affine coupling) on any data; maf, iaf or ffjord on 2-D '
      f'data only (default: {presets.IMAGE_DEFAULTS["flow"]} for images, '
      f'{presets.VECTOR_DEFAULTS["flow"]} for 2-D data, measured in '
      'BENCHMARKS.md).')
  num_scales: Optional[int] = _field(
      None, 'Images: scales of the multi-scale architecture (default: 2, the '
      'paper\'s CIFAR-10 model).')
  num_res_blocks: Optional[int] = _field(
      None, 'Images: residual blocks per s/t network (default: 8, the '
      'paper\'s CIFAR-10 model).')
  num_filters: Optional[int] = _field(
      None, 'Images: feature maps at the first scale (default: 64, the '
      'paper\'s CIFAR-10 model).')
  num_coupling_layers: Optional[int] = _field(
      None, 'Vectors: couplings (realnvp, nice, nsf, glow; default 8, nsf '
      '4) or MADE layers (maf, iaf; default 5).')
  hidden_units: Optional[Tuple[int, ...]] = _field(
      None, 'Vectors: hidden widths of the s/t MLPs (default 128,128; nsf '
      '64,64), of MADE (maf, iaf; 128,128) or of the ODE network (ffjord; '
      '64,64,64).')
  spline_bins: Optional[int] = _field(
      None, 'nsf: bins of each rational-quadratic spline (default 8; 2-D '
      f'data: {presets.VECTOR_FLOW_DEFAULTS["nsf"]["spline_bins"]}).')
  spline_bound: Optional[float] = _field(
      None, 'nsf: each spline acts on [-B, B] and is the identity outside '
      '(default 6; images: in logit space).')
  batch_norm: str = _field(
      'none', 'Batch normalization (Dinh et al. 2017, Sec. 3.7): none; '
      'networks (inside the s/t ResNets, images); couplings (the paper\'s '
      'BatchNorm bijector after every coupling; realnvp, nice, nsf, glow); or '
      'both. Training normalizes with the batch\'s statistics (synchronized '
      'across replicas); evaluation, samples and the export with running '
      'averages, an exact per-example density.')
  recompute: str = _field(
      'none', 'Training memory (realnvp, nice, nsf, glow): none keeps every '
      'activation for the backward pass; networks keeps only the inputs of '
      'the s/t networks and runs them again; invertible keeps only the '
      "couplings' output and rebuilds each layer's input with its inverse, "
      'so memory does not grow with the number of couplings. The same '
      'gradients in each (invertible: to float32 round-off); measured in '
      'BENCHMARKS.md. A resumed run may change it.')
  dequantization: Optional[str] = _field(
      None, 'Images: the noise that makes the 8-bit pixels continuous: '
      'uniform (x + U[0, 1), as in the paper) or variational (Flow++, Ho et '
      'al. 2019: a flow of the noise conditioned on the image, trained with '
      'the model; the bits/dim are then a one-sample estimate of the '
      'variational bound on the discrete likelihood) (realnvp, nice, nsf, '
      f'glow; default: {presets.IMAGE_DEFAULTS["dequantization"]}).')
  conditional: bool = _field(
      False, 'Class-conditional model of a labelled dataset: every coupling '
      'network sees a learned embedding of the class, and the prior has a '
      'learned mean and scale per class (realnvp, nice, nsf, glow).')
  mixed_precision: Optional[bool] = _field(
      None, 'Run the s/t networks in bfloat16; log-dets and the exports '
      'stay float32 (realnvp, nice, nsf, glow) (default: on for image data '
      'where the hardware computes bfloat16 natively: CPUs with AMX or '
      'AVX512-BF16, GPUs of compute capability 8.0 or more; off otherwise; '
      '--mixed_precision=false turns it off).')

  # Optimisation (Dinh et al. 2017, Sec. 4.1: Adam, L2 5e-5 on weight scales).
  batch_size: Optional[int] = _field(
      None, 'Global batch size, split across replicas (default: '
      f'{presets.IMAGE_DEFAULTS["batch_size"]} for images as in the paper, '
      f'{presets.VECTOR_DEFAULTS["batch_size"]} for 2-D data).')
  train_steps: Optional[int] = _field(
      None, 'Steps to train (default: --epochs, else '
      f'{presets.VECTOR_DEFAULTS["train_steps"]} for 2-D data, measured in '
      'BENCHMARKS.md).')
  epochs: Optional[float] = _field(
      None, 'Epochs to train, if --train_steps is unset (default for images: '
      f'{presets.IMAGE_DEFAULTS["epochs"]}, as the PyTorch reference '
      'implementation, chrischute/real-nvp).')
  learning_rate: Optional[float] = _field(
      None, 'Adam learning rate, after the warmup and before any decay '
      '(default on 2-D data: '
      f'{presets.VECTOR_FLOW_DEFAULTS["realnvp"]["learning_rate"]:g} for '
      f'realnvp, {presets.VECTOR_FLOW_DEFAULTS["nsf"]["learning_rate"]:g} '
      'for nsf, measured in BENCHMARKS.md; else '
      f'{presets.PAPER_RECIPE["learning_rate"]:g}, the paper\'s).')
  warmup_steps: Optional[int] = _field(
      None, 'Raise the learning rate linearly from 0 to --learning_rate over '
      'this many updates (default: '
      f'{presets.VECTOR_FLOW_DEFAULTS["nsf"]["warmup_steps"]} for realnvp '
      'and nsf on 2-D data, at most '
      f'{presets.WARMUP_SHARE:.0%} of the run, else 0).')
  lr_decay: Optional[str] = _field(
      None, 'After the warmup: none (constant learning rate) or cosine (to '
      '--lr_decay_floor * --learning_rate at the end of the run) (default: '
      'cosine for realnvp and nsf on 2-D data, else none; none where a '
      '--warmup_steps given leaves no step to decay).')
  lr_decay_floor: float = _field(
      0., 'cosine: the final learning rate, as a fraction of --learning_rate.')
  ema_decay: float = _field(
      0., 'Polyak averaging: evaluation, samples and the export use an '
      'exponential moving average of the weights with this decay per update '
      '(e.g. 0.999); 0 turns it off.')
  l2: float = _field(5e-5, 'L2 coefficient on the weight-normalization gains.')
  clip_norm: float = _field(100., 'Clip gradients to this global norm.')
  max_bad_steps: int = _field(
      20, 'Stop after this many consecutive steps with a non-finite loss or '
      'gradient (each is skipped and counted).')
  seed: int = _field(0, 'Seed of initialisation, data order, noise and samples.')

  # Execution.
  strategy: str = _field(
      'auto', 'auto (multi_worker when TF_CONFIG names a cluster, else mirrored '
      'over all GPUs, else one CPU device), one_device, mirrored or '
      'multi_worker (MultiWorkerMirroredStrategy configured by TF_CONFIG).')
  jit: Optional[bool] = _field(
      None, 'XLA-compile the per-replica step (default: on with GPUs and for '
      'nsf on 2-D data; off for the rest on CPU, where it measured slower).')
  deterministic: bool = _field(
      True, 'Deterministic ops, so a resumed run equals an uninterrupted one.')

  # Bookkeeping.
  model_dir: Optional[str] = _field(
      None, 'Checkpoints, summaries, samples and export (default: runs/DATASET).')
  log_every: int = _field(100, 'Steps between TensorBoard training scalars.')
  eval_every: Optional[int] = _field(
      None, 'Steps between evaluations and sample plots (default: an epoch for '
      'images, 1000 steps for 2-D data).')
  checkpoint_every: int = _field(1000, 'Steps between checkpoints.')
  keep_checkpoints: int = _field(3, 'Checkpoints to keep.')
  eval_batches: Optional[int] = _field(
      None, 'Test batches per evaluation (default: the whole test split).')
  export: bool = _field(True, 'Write model_dir/saved_model at the end.')
  restart: bool = _field(
      False, 'Start over in a --model_dir that holds a run: deletes its '
      'checkpoints (without it, a run resumes, or refuses other settings).')

  # Records of the run, written by it (not flags).
  given: Optional[Tuple[str, ...]] = _field(
      None, 'The settings the user gave; the others took their defaults. '
      'None: the fields that differ from their default here (a Config built '
      'in Python); `resolve` fills it in.', flag=False)
  lr_plan: Tuple[dict, ...] = _field(
      (), 'The changes of the run\'s length with a decaying learning rate, '
      'in order: dict(update=t, rate=r, ramp=R, from_train_steps=T0, '
      'train_steps=T): from update t on, the rate moves linearly over R '
      'updates from r (the rate reached) to the schedule of a T-step run, '
      'then follows it (`training.optimizers.learning_rate_schedule`).',
      flag=False)

  def __post_init__(self):
    # From flags or JSON, hidden widths arrive as a list (of strings).
    if self.hidden_units is not None:
      self.hidden_units = tuple(int(units) for units in self.hidden_units)
    if self.given is not None:
      self.given = tuple(sorted(self.given))
    self.lr_plan = tuple(dict(change) for change in self.lr_plan)

  def given_fields(self):
    """The names of the settings the user gave (see the module docstring)."""
    if self.given is not None:
      return self.given
    return tuple(sorted(
        field.name for field in flag_fields(type(self))
        if getattr(self, field.name) != field.default))

  def save(self, model_dir):
    """Writes the config as `model_dir/config.json`, if it changed.

    The file is written whole to a temporary sibling and renamed into place,
    so a kill at any moment leaves the old file or the new one.
    """
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, 'config.json')
    text = json.dumps(dataclasses.asdict(self), indent=2)
    if os.path.exists(path):
      with open(path) as f:
        if f.read() == text:
          return
    temporary = f'{path}.tmp-{os.getpid()}'
    with open(temporary, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)

  @classmethod
  def load(cls, model_dir):
    """Reads `model_dir/config.json`.

    A field the file lacks takes its `ABSENT_FIELD_VALUES` value if it has
    one (what the run did before the field existed), else its default.
    """
    path = os.path.join(model_dir, 'config.json')
    if not os.path.exists(path):
      raise FileNotFoundError(
          f'{path} not found: is {model_dir} the --model_dir of a training run?')
    with open(path) as f:
      return cls(**{**ABSENT_FIELD_VALUES, **json.load(f)})


@dataclasses.dataclass
class EvaluationConfig:
  """Settings of `evaluate.py`: evaluating a trained run, or scoring a
  dataset against it (`score`)."""

  model_dir: Optional[str] = _field(None,
                                    'The --model_dir of a training run.')
  num_dequantizations: Optional[int] = _field(
      None, 'Images: dequantization noise draws to average over (default: '
      '--importance_samples, so that both bounds come from the same draws; '
      'with --score, 1).')
  importance_samples: int = _field(
      1, 'Images: with K > 1, also the importance-weighted bound of K '
      'dequantization draws per image (tighter).')
  temperature: float = _field(
      1.0, 'Standard deviation of the base Normal for the samples.')
  eval_batches: Optional[int] = _field(
      None, 'Test batches to use (default: the whole test split).')
  export: bool = _field(False, 'Also write model_dir/saved_model.')
  export_formats: Tuple[str, ...] = _field(
      (), 'Also export as these, any of saved_model (as --export), tflite, '
      'onnx (pip install -e ".[export]"): '
      'model_dir/export/{log_prob,decode}.{tflite,onnx}.')
  score: Optional[str] = _field(
      None, 'Score this dataset (anything --dataset takes; a folder: every '
      "image in it) against the run's test split, instead of evaluating.")
  score_batch: Optional[int] = _field(
      None, 'With --score: the typicality test of each batch of this many '
      'consecutive examples.')

  def __post_init__(self):
    self.export_formats = tuple(self.export_formats)
