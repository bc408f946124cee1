"""Test settings: quiet TensorFlow; two logical CPUs; the entry scripts
importable from tests; every test starts from the same random state."""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

# Two logical CPUs, '/cpu:0' and '/cpu:1', so a test can compare a
# MirroredStrategy over two replicas with one device in this process. It must
# happen before TensorFlow initializes its devices, hence here.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(scope='session')
def two_replicas():
  """One MirroredStrategy over '/cpu:0' and '/cpu:1' for the whole session.

  A second MirroredStrategy in the same process can cancel the collective
  all-reduce functions of the first ("Function was cancelled before it was
  started"), so the tests share this one.
  """
  return tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])


@pytest.fixture(autouse=True)
def same_random_state():
  """Seeds Python, NumPy, TensorFlow and Keras before each test.

  Weights drawn from the global random state then do not depend on which
  tests ran before in the same worker, so a test passes or fails the same
  way in any order.
  """
  keras.utils.set_random_seed(0)
