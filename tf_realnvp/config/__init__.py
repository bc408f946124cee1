"""A run's settings, their defaults and checks, and its directory."""

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
