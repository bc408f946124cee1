"""Test settings: quiet TensorFlow, few threads (CI has 2 cores)."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
