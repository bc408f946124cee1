"""The flags of `train.py` and `evaluate.py`, made from their settings."""

import dataclasses
import sys
import typing

from absl import flags

from tf_realnvp.config import checks
from tf_realnvp.config import settings as config_lib

# The exit code of a bad flag, or of a setting that cannot work.
USAGE_ERROR = 2


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
  """The config of the flags; its `given`, if it has one, lists those on the
  command line."""
  fields = config_lib.flag_fields(config_class)
  values = {f.name: flags.FLAGS[f.name].value for f in fields}
  if 'given' in {f.name for f in dataclasses.fields(config_class)}:
    values['given'] = tuple(
        f.name for f in fields if flags.FLAGS[f.name].present)
  return config_class(**values)


def parse_flags(argv):
  """absl's flag parsing, with a bad flag as one line and exit code 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    sys.stderr.write(f'error: {error}\n')
    sys.exit(USAGE_ERROR)
