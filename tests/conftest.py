"""Test settings: quiet TensorFlow; two logical CPUs; the entry scripts
importable from tests; every test starts in an empty working directory, from
the same random state, and sees hardware without native bfloat16; the slowest files first and the tests of a
shared fixture together, so the two xdist workers finish together."""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from tf_realnvp.config import hardware  # pylint: disable=g-import-not-at-top,wrong-import-position

# Two logical CPUs, '/cpu:0' and '/cpu:1', so a test can compare a
# MirroredStrategy over two replicas with one device in this process. It must
# happen before TensorFlow initializes its devices, hence here.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices('CPU')[0],
    [tf.config.LogicalDeviceConfiguration()] * 2)

# No Grappler in the test processes: it spends a third of a short run's time
# optimizing graphs that then run a few times. What it computes is what the
# graph says, so the tests' properties hold either way; the scripts that tests
# start as users start them (test_cli, test_reliability, test_multi_worker,
# test_saved_model's reloads) and test_networks' Grappler test run with it on.
tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})


# The files whose tests take longest, those with the longest single test or
# shared fixture first (`pytest --durations`). Tests are handed out one at a
# time (`--dist loadgroup` in setup.cfg), the next to whichever worker is
# free, in collection order: with the long ones first, the short ones even
# out the end instead of one long test running alone while the other worker
# idles.
SLOWEST_FILES = (
    'test_portable.py',
    'test_reliability.py',
    'test_multi_worker.py',
    'test_benchmark.py',
    'test_saved_model.py',
    'test_loop.py',
    'test_conditional.py',
    'test_scoring.py',
    'test_docs.py',
    'test_first_tweaks.py',
    'test_hardware.py',
    'test_datasets.py',
    'test_flows.py',
    'test_console.py',
    'test_cli.py',
    'test_realnvp.py',
)


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'xdist_group(name): tests that run on the same xdist worker')


@pytest.hookimpl(tryfirst=True)  # Before xdist reads the groups.
def pytest_collection_modifyitems(items):
  """Orders the tests slowest files first (a file's tests keep their order)
  and puts the tests that share module- or class-scoped fixtures of their
  file in one xdist group, so that each fixture is computed once."""
  def rank(item):
    name = os.path.basename(str(item.path))
    return (SLOWEST_FILES.index(name) if name in SLOWEST_FILES
            else len(SLOWEST_FILES))
  items.sort(key=rank)
  # Tests are linked by each fixture they share; a group is a connected set
  # (a test of fixtures `a` and `b` joins those of `a` alone to those of `b`
  # alone), so no fixture is computed on both workers.
  group = {}

  def root(fixture):
    while group.setdefault(fixture, fixture) != fixture:
      fixture = group[fixture]
    return fixture

  fixtures = {}
  for item in items:
    fixtures[item] = [
        f'{os.path.basename(str(item.path))}::{name}'
        for name, definitions in item._fixtureinfo.name2fixturedefs.items()
        if definitions[-1].scope in ('class', 'module')
        and '.py' in definitions[-1].baseid]  # Defined in a test file.
    for fixture in fixtures[item][1:]:
      group[root(fixture)] = root(fixtures[item][0])
  for item in items:
    if fixtures[item]:
      item.add_marker(pytest.mark.xdist_group(root(fixtures[item][0])))


@pytest.fixture(scope='session')
def two_replicas():
  """One MirroredStrategy over '/cpu:0' and '/cpu:1' for the whole session.

  A second MirroredStrategy in the same process can cancel the collective
  all-reduce functions of the first ("Function was cancelled before it was
  started"), so the tests share this one.
  """
  return tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])


@pytest.fixture(autouse=True)
def empty_working_directory(tmp_path, monkeypatch):
  """Each test starts in an empty working directory of its own: a setting
  left to default resolves to a new run, never to one in `runs/` (train.py's
  default model directory, relative) that a user or another test left."""
  monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def same_random_state():
  """Seeds Python, NumPy, TensorFlow and Keras before each test.

  Weights drawn from the global random state then do not depend on which
  tests ran before in the same worker, so a test passes or fails the same
  way in any order.
  """
  keras.utils.set_random_seed(0)


@pytest.fixture(scope='session', autouse=True)
def hardware_without_native_bfloat16():
  """Every test sees no GPU and a CPU without bfloat16 flags (an empty
  cpuinfo), so a run that leaves --mixed_precision unset trains in float32
  on any machine, as the tests were written for. Session-wide, so that the
  runs module fixtures train see it too; a test of other hardware patches
  the same names itself. (What TensorFlow itself sees is untouched.)"""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(hardware, 'gpu_details', list)
    patch.setattr(hardware, 'CPU_INFO', os.devnull)
    yield
