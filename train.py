"""Trains a RealNVP flow: `python train.py --dataset=cifar10`.

Every field of `tf_realnvp.config.Config` is a flag of the same name; the
default run (`python train.py`) fits the 2-D `moons` toy in about a minute on a
CPU and needs no download. Re-running a command resumes its `--model_dir`.
A setting that cannot work stops the run before any data is read, with one
line on stderr and exit code 2. TensorFlow's own logs are off: `-v` brings
back its warnings and this program's INFO lines, `-vv` everything.
"""

import sys

from tf_realnvp import console

VERBOSITY, ARGV = console.split_verbosity(sys.argv)
console.quiet(VERBOSITY)  # Before TensorFlow is imported.

# pylint: disable=g-import-not-at-top,wrong-import-position
import typing

from absl import app
from absl import flags

from tf_realnvp import config as config_lib
from tf_realnvp import data
from tf_realnvp import training
from tf_realnvp.config import checks
from tf_realnvp.config import experiment as experiment_lib
from tf_realnvp.config import run_dir

# Exit codes: 0 done, 1 a problem with the data or the run directory, or a
# diverged run; 2 a setting that cannot work; 130 stopped by a signal, with a
# checkpoint saved.
USAGE_ERROR = 2
INTERRUPTED = 130


def define_flags(config_class=config_lib.Config):
  """Defines one absl flag per config field, with its default and help.

  A field with a fixed set of values (`checks.CHOICES`) is an enum flag,
  whose help lists them.
  """
  hints = typing.get_type_hints(config_class)
  for field in config_lib.flag_fields(config_class):
    kind = hints[field.name]
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
      kind = next(a for a in typing.get_args(kind) if a is not type(None))
    help_text = field.metadata['help']
    if field.name in checks.CHOICES:
      flags.DEFINE_enum(field.name, field.default,
                        checks.CHOICES[field.name], help_text)
    elif kind is bool:
      flags.DEFINE_bool(field.name, field.default, help_text)
    elif kind is int:
      flags.DEFINE_integer(field.name, field.default, help_text)
    elif kind is float:
      flags.DEFINE_float(field.name, field.default, help_text)
    elif kind is str:
      flags.DEFINE_string(field.name, field.default, help_text)
    else:  # Tuple[int, ...]
      default = (None if field.default is None
                 else [str(v) for v in field.default])
      flags.DEFINE_list(field.name, default, help_text)


def config_from_flags(config_class=config_lib.Config):
  """The config of the flags; `given` lists those on the command line."""
  fields = config_lib.flag_fields(config_class)
  return config_class(
      given=tuple(f.name for f in fields if flags.FLAGS[f.name].present),
      **{f.name: flags.FLAGS[f.name].value for f in fields})


def parse_flags(argv):
  """absl's flag parsing, with a bad flag as one line and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    sys.stderr.write(f'error: {error}\n')
    sys.exit(USAGE_ERROR)


def main(argv):
  del argv
  experiment = experiment_lib.resolve(config_from_flags())
  result = training.train_and_evaluate(experiment)
  print(' '.join(f'{k}={v}' for k, v in result.items()))


if __name__ == '__main__':
  define_flags()
  app.run(console.exit_on_errors(main, {
      experiment_lib.ConfigError: USAGE_ERROR,
      training.TrainingInterrupted: INTERRUPTED,
      data.DatasetUnavailableError: 1,
      data.DataError: 1,
      run_dir.ModelDirBusyError: 1,
      run_dir.NoIntactCheckpointError: 1,
      run_dir.SaveError: 1,
      training.TrainingDivergedError: 1,
  }), argv=ARGV, flags_parser=parse_flags)
