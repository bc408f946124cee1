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
from absl import app
from absl import flags

from tf_realnvp import data
from tf_realnvp import training
from tf_realnvp.config import command_line
from tf_realnvp.config import experiment as experiment_lib
from tf_realnvp.config import run_dir

# Exit codes: 0 done, 1 a problem with the data or the run directory, or a
# diverged run; 2 a setting that cannot work (`command_line.USAGE_ERROR`);
# 130 stopped by a signal, with a checkpoint saved.
INTERRUPTED = 130


def main(argv):
  del argv
  experiment = experiment_lib.resolve(command_line.config_from_flags())
  result = training.train_and_evaluate(experiment)
  print(' '.join(f'{k}={v}' for k, v in result.items()))


if __name__ == '__main__':
  command_line.define_flags()
  flags.adopt_module_key_flags(command_line)  # In --help.
  app.run(console.exit_on_errors(main, {
      experiment_lib.ConfigError: command_line.USAGE_ERROR,
      training.TrainingInterrupted: INTERRUPTED,
      data.DatasetUnavailableError: 1,
      data.DataError: 1,
      run_dir.ModelDirBusyError: 1,
      run_dir.NoIntactCheckpointError: 1,
      run_dir.SaveError: 1,
      training.TrainingDivergedError: 1,
  }), argv=ARGV, flags_parser=command_line.parse_flags)
