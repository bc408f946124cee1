"""Trains a RealNVP flow: `python train.py --dataset=cifar10 --epochs=100`.

Every field of `tf_realnvp.config.Config` is a flag of the same name; the
default run (`python train.py`) fits the 2-D `moons` toy in about a minute on a
CPU and needs no download. Re-running a command resumes its `--model_dir`.
"""

import dataclasses
import sys
import typing

from absl import app
from absl import flags

from tf_realnvp import config as config_lib
from tf_realnvp import input_pipeline
from tf_realnvp import trainer


def define_flags(config_class=config_lib.Config):
  """Defines one absl flag per config field, with its default and help."""
  hints = typing.get_type_hints(config_class)
  for field in dataclasses.fields(config_class):
    kind = hints[field.name]
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
      kind = next(a for a in typing.get_args(kind) if a is not type(None))
    help_text = field.metadata['help']
    if kind is bool:
      flags.DEFINE_bool(field.name, field.default, help_text)
    elif kind is int:
      flags.DEFINE_integer(field.name, field.default, help_text)
    elif kind is float:
      flags.DEFINE_float(field.name, field.default, help_text)
    elif kind is str:
      flags.DEFINE_string(field.name, field.default, help_text)
    else:  # Tuple[int, ...]
      flags.DEFINE_list(field.name, [str(v) for v in field.default], help_text)


def config_from_flags(config_class=config_lib.Config):
  return config_class(**{f.name: flags.FLAGS[f.name].value
                          for f in dataclasses.fields(config_class)})


def main(argv):
  del argv
  try:
    result = trainer.train_and_evaluate(config_from_flags())
  except (input_pipeline.DatasetUnavailableError,
          trainer.TrainingDivergedError) as error:
    sys.exit(f'error: {error}')
  print(' '.join(f'{k}={v}' for k, v in result.items()))


if __name__ == '__main__':
  define_flags()
  app.run(main)
