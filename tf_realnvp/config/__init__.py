"""A run's settings, their defaults and checks, and its directory.

    settings.py    Config: every setting with its default and meaning;
                   EvaluationConfig: those of evaluate.py
    command_line.py  the flags of train.py and evaluate.py, from those
    presets.py     the defaults that depend on the data and the flow, and
                   the paper's presets, as tables with their sources
    checks.py      the checks of the settings, each a one-line ConfigError
    hardware.py    whether the devices compute bfloat16 natively (the
                   default precision)
    experiment.py  resolve(config) -> Experiment: every setting checked and
                   completed, the dataset described once, the flow factory
    run_dir.py     the run directory: its lock and its checkpoints
"""

from tf_realnvp.config.settings import ABSENT_FIELD_VALUES
from tf_realnvp.config.settings import Config
from tf_realnvp.config.settings import EvaluationConfig
from tf_realnvp.config.settings import ConfigError
from tf_realnvp.config.settings import flag_fields
from tf_realnvp.config.settings import ADAPTIVE_DEFAULT_FIELDS
from tf_realnvp.config.settings import KEPT_ON_RESUME
from tf_realnvp.config.settings import RESUME_FIELDS

__all__ = [
    'ABSENT_FIELD_VALUES', 'Config', 'ConfigError', 'EvaluationConfig',
    'flag_fields',
    'ADAPTIVE_DEFAULT_FIELDS', 'KEPT_ON_RESUME', 'RESUME_FIELDS',
]
