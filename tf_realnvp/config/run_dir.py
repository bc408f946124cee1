"""The model directory of a run: its lock and the checkpoint to resume."""

import contextlib
import fcntl
import glob
import os
import re
import shutil
import socket

from absl import logging
import tensorflow as tf

LOCK_FILE = 'lock'
DAMAGED = 'damaged'


class ModelDirBusyError(RuntimeError):
  """Another live run holds the model directory."""


class NoIntactCheckpointError(RuntimeError):
  """The model directory has checkpoints, and none of them reads back."""


class SaveError(RuntimeError):
  """A checkpoint could not be written (a full disk, say); the ones before it
  are intact, and the half-written one is removed."""

  def __init__(self, directory, step, previous_step, error):
    shutil.rmtree(os.path.join(directory, f'ckpt-{step}_temp'),
                  ignore_errors=True)
    reason = getattr(error, 'message', str(error)).split('\n')[0]
    intact = (f'the one of step {previous_step} is intact'
              if previous_step is not None else 'no earlier one was written')
    super().__init__(
        f'Could not write the checkpoint of step {step} to {directory} '
        f'({reason[-200:]}); {intact}. Make room (or fix the folder), then '
        'run the same command again to resume.')


@contextlib.contextmanager
def locked(model_dir):
  """Holds `model_dir`'s lock while the block runs.

  One training run at a time per directory: the lock is an OS file lock
  (`fcntl.flock`) on `model_dir/lock`, which also names its holder; the OS
  drops it when the holder exits, however it exits, so a lock left by a
  killed run is simply taken over.

  Raises:
    ModelDirBusyError: if another process holds it, naming that process.
  """
  os.makedirs(model_dir, exist_ok=True)
  with open(os.path.join(model_dir, LOCK_FILE), 'a+') as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock.seek(0)
      holder = lock.read().strip() or 'another process'
      raise ModelDirBusyError(
          f'{model_dir} is in use by a training run ({holder}). Wait for it '
          'to end, stop it, or use another --model_dir.') from None
    lock.seek(0)
    lock.truncate()
    lock.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
    lock.flush()
    yield


def checkpoints_newest_first(directory):
  """The prefixes `directory/ckpt-N` that have an index file, newest first."""
  numbers = []
  for path in glob.glob(os.path.join(directory, 'ckpt-*.index')):
    match = re.fullmatch(r'ckpt-(\d+)\.index', os.path.basename(path))
    if match:
      numbers.append(int(match[1]))
  return [os.path.join(directory, f'ckpt-{n}') for n in sorted(numbers)[::-1]]


def restore_newest_intact(checkpoint, directory, tidy=True, partial=False):
  """Restores `checkpoint` from the newest intact checkpoint in `directory`.

  One whose files are missing, truncated or unreadable is skipped, with a
  warning that names it, and the next older one is tried; TensorFlow's
  `checkpoint` index file is not trusted for this, since it can itself be
  missing or damaged.

  With `tidy` (the task that writes the directory), damaged checkpoints
  newer than it are moved to `directory/damaged/`, and the `checkpoint`
  index file is rewritten to list the intact ones, so that
  `tf.train.CheckpointManager` goes on from there. With `partial`,
  `checkpoint` may hold only some of the checkpoint's objects.

  Returns:
    The prefix restored from, or None when `directory` has no checkpoint.

  Raises:
    NoIntactCheckpointError: when it has some and none reads back.
  """
  if not tf.io.gfile.isdir(directory):
    return None
  prefixes = checkpoints_newest_first(directory)
  newest = _number(prefixes[0]) if prefixes else -1
  damaged = [(prefix, 'its .index file is missing')
             for prefix in _without_index(directory) if _number(prefix) > newest]
  for index, prefix in enumerate(prefixes):
    try:
      status = checkpoint.restore(prefix).assert_existing_objects_matched()
      if partial:
        status.expect_partial()
    except Exception as error:  # pylint: disable=broad-except
      # Whatever the damage (a missing or truncated file, garbage), this
      # checkpoint cannot be resumed from; the next older one may be.
      damaged.append((prefix, f'{type(error).__name__}: {error}'.strip()))
      continue
    if tidy:
      _set_aside(damaged, directory)
      intact = prefixes[index:][::-1]
      tf.compat.v1.train.update_checkpoint_state(
          directory, prefix, all_model_checkpoint_paths=intact,
          all_model_checkpoint_timestamps=[
              os.path.getmtime(p + '.index') for p in intact])
    return prefix
  if damaged:
    names = ', '.join(os.path.basename(p) for p, _ in damaged)
    raise NoIntactCheckpointError(
        f'{directory} holds checkpoints, and none reads back (damaged: '
        f'{names}). Pass --restart to start over, which deletes them.')
  if tidy and tf.io.gfile.exists(os.path.join(directory, 'checkpoint')):
    # An index file without checkpoints (perhaps garbage) would stop
    # `tf.train.CheckpointManager`; there is nothing in it to keep.
    tf.io.gfile.remove(os.path.join(directory, 'checkpoint'))
  return None


def _number(prefix):
  return int(prefix.rsplit('-', 1)[1])


def _without_index(directory):
  """The prefixes `ckpt-N` in `directory` with data but no index, newest
  first."""
  prefixes = {path.split('.data-')[0] for path in
              glob.glob(os.path.join(directory, 'ckpt-*.data-*'))}
  return sorted((p for p in prefixes
                 if re.fullmatch(r'ckpt-\d+', os.path.basename(p))
                 and not os.path.exists(p + '.index')),
                key=_number, reverse=True)


def _set_aside(damaged, directory):
  """Moves the files of `damaged` checkpoints into `directory/damaged/`."""
  for prefix, problem in damaged:
    destination = os.path.join(directory, DAMAGED)
    os.makedirs(destination, exist_ok=True)
    for path in glob.glob(prefix + '.*'):
      shutil.move(path, os.path.join(destination, os.path.basename(path)))
    logging.warning('Skipped the damaged checkpoint %s (%s); moved it to %s.',
                    prefix, problem[:300], destination)


def remove_checkpoints(directory):
  """Deletes `directory` (the checkpoints of a run started over)."""
  shutil.rmtree(directory, ignore_errors=True)


def remove_stale_siblings(export_dir):
  """Removes `export_dir.tmp-PID` and `.old-PID` of processes now gone.

  Those of this process go too (an earlier process had its PID, or an
  earlier export here was killed between its steps); those of any other
  live process stay. Returns the removed paths.
  """
  parent, name = os.path.split(os.path.abspath(export_dir))
  pattern = re.compile(re.escape(name) + r'\.(?:tmp|old)-([0-9]+)')
  removed = []
  for entry in os.listdir(parent or '.'):
    match = pattern.fullmatch(entry)
    if not match:
      continue
    pid = int(match.group(1))
    if pid != os.getpid() and _is_running(pid):
      continue
    path = os.path.join(parent, entry)
    shutil.rmtree(path, ignore_errors=True)
    removed.append(path)
  return removed


def _is_running(pid):
  """Whether a process `pid` exists (possibly another user's)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  except OverflowError:  # Not a PID at all.
    return False
  return True
