"""What the entry scripts show on a console: logs, progress and errors."""

import functools
import logging
import numbers
import os
import re
import sys
import tempfile
import time

from absl import logging as absl_logging

# What each verbosity lets through. TensorFlow's C++ side, as
# TF_CPP_MIN_LOG_LEVEL (3: FATAL only, 1: WARNING and up; 2 keeps the default,
# everything); its Python side, as the level of the 'tensorflow' logger; the
# absl logger, which this package, tfds and keras write to.
_CPP_MIN_LOG_LEVEL = {0: '3', 1: '1'}
_TF_PYTHON_LEVEL = {0: logging.ERROR, 1: logging.WARNING, 2: logging.NOTSET}
_ABSL_VERBOSITY = {0: absl_logging.WARNING, 1: absl_logging.INFO,
                   2: absl_logging.INFO}

# A line TensorFlow's C++ code logs, in absl's format ("I0000 00:00:17.5  42
# port.cc:153] ...") or in the older one ("2025-09-17 14:44:05.1: I a.cc:3]");
# group 1 is the severity.
_CPP_LOG_LINE = re.compile(
    r'(?:\d{4}-\d\d-\d\d [\d:.]+: )?([IWEF])[\d:. ]*\S+:\d+\] ')
_ABSL_BANNER = 'WARNING: All log messages before absl::InitializeLog()'


def split_verbosity(argv):
  """The verbosity that `argv` asks for, and `argv` without those arguments.

  Reads `-v` (1), `-vv` (2), `--verbosity=N` and `--verbosity N`, N clipped
  to 0..2, before `--`. It runs before absl parses the flags, which happens
  after the imports, TensorFlow's among them. The arguments are taken out
  because absl has a `--verbosity` flag of its own (absl levels, where 1 is
  DEBUG, and a value required: `-v` and `-vv` would be errors).

  Args:
    argv: the command line, `sys.argv`.

  Returns:
    `(verbosity, rest)`: an int in 0..2 (0 without any of the arguments) and
    the other arguments, in order.
  """
  verbosity, rest, args = 0, [], iter(argv)
  for arg in args:
    if arg == '--':
      rest += [arg, *args]
    elif arg in ('-v', '-vv'):
      verbosity = len(arg) - 1
    elif arg == '--verbosity' or arg.startswith('--verbosity='):
      value = arg.partition('=')[2] if '=' in arg else next(args, '')
      try:
        verbosity = min(max(int(value), 0), 2)
      except ValueError:
        print(f'error: --verbosity takes 0, 1 or 2, got {value!r}.',
              file=sys.stderr)
        sys.exit(2)
    else:
      rest.append(arg)
  return verbosity, rest


def quiet(verbosity=0):
  """Lets through TensorFlow's and absl's logs as `verbosity` says.

  0: off are TensorFlow's C++ logs below FATAL, its Python INFO and WARNING
  lines, and absl INFO (this package's `logging.info` too); absl warnings and
  errors, ours among them, still show. 1: TensorFlow's warnings and errors,
  and absl INFO, which has TensorFlow's own lines too (signatures renamed on
  export, checkpoint sharding times). 2: all that TensorFlow shows by
  default, with absl INFO.

  Call it before anything imports TensorFlow: TF_CPP_MIN_LOG_LEVEL (set here
  for 0 and 1, whatever the environment had) is read during the import, and
  for 0 and 1 this function does the import itself, to filter what
  TensorFlow's libraries log while they load, before any setting applies.
  Called later, it changes only the Python loggers. `absl.app.run` keeps the
  absl level set here, as if `--verbosity` had been given.

      import sys
      from tf_realnvp import console
      VERBOSITY, ARGV = console.split_verbosity(sys.argv)
      console.quiet(VERBOSITY)        # before anything imports TensorFlow
      ...
      app.run(console.exit_on_errors(main, {ConfigError: 2}), argv=ARGV)

  `-v` brings back TensorFlow's warnings and the `logging.info` lines, `-vv`
  everything TensorFlow prints by default. `Progress` is the training bar:
  redrawn in place on a terminal, a plain line every so often in a log file.

  This module imports no TensorFlow at its top: TensorFlow reads its C++ log
  level once, while it is first imported.

  Args:
    verbosity: 0, 1 or 2.
  """
  if verbosity < 2:
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = _CPP_MIN_LOG_LEVEL[verbosity]
  logging.getLogger('tensorflow').setLevel(_TF_PYTHON_LEVEL[verbosity])
  # Sets absl's --verbosity flag, which `app.run` then leaves as it is.
  absl_logging.set_verbosity(_ABSL_VERBOSITY[verbosity])
  if verbosity < 2 and 'tensorflow' not in sys.modules:
    _import_tensorflow(keep='F' if verbosity == 0 else 'WEF')
    # TensorFlow gives its logger a handler of its own when the root logger
    # has none yet; under `app.run` every line would then show twice.
    logging.getLogger('tensorflow').handlers.clear()


def _import_tensorflow(keep):
  """Imports TensorFlow; passes on to stderr only C++ logs of `keep` severity.

  While its libraries load, before it reads TF_CPP_MIN_LOG_LEVEL, TensorFlow
  logs the oneDNN and CUDA-driver notes and absl's "before
  absl::InitializeLog()" banner, whatever the level
  (tensorflow/tensorflow#100442). No setting reaches them, so the import
  writes stderr's file descriptor to a file, and the rest is passed on after
  it, Python warnings and tracebacks included. A crash inside the import
  takes its last words with it: `-vv` shows them.

  Args:
    keep: the severity letters (of 'IWEF') of the C++ lines to pass on.
  """
  sys.stderr.flush()
  stderr = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    finally:
      sys.stderr.flush()
      os.dup2(stderr, 2)
      os.close(stderr)
      captured.seek(0)
      sys.stderr.write(_filter_cpp_logs(
          captured.read().decode(errors='replace'), keep))
      sys.stderr.flush()


def _filter_cpp_logs(text, keep):
  """`text` without absl's banner and the C++ log lines not of `keep` severity.

  Each line is judged alone, so a Python warning after a dropped line stays.
  So would the second line of a C++ entry; the one TensorFlow logs while it
  loads, the note on CPU instructions, is INFO, which TF_CPP_MIN_LOG_LEVEL
  already turns off.
  """
  def wanted(line):
    entry = _CPP_LOG_LINE.match(line)
    if entry:
      return entry.group(1) in keep
    return not line.startswith(_ABSL_BANNER)
  return ''.join(filter(wanted, text.splitlines(keepends=True)))


class Progress:
  """Steps done of `total`, the time left and the latest values, as one line.

      with console.Progress(num_steps) as progress:
        for step in range(start + 1, num_steps + 1):
          ...
          progress.update(step, loss=loss, skipped=bad_steps)

  On a terminal the line is a bar redrawn in place (carriage returns, no other
  control characters) every `interval_s`; otherwise a plain line is written
  every `interval_s` and at `close`, so a log file gets neither ANSI escapes
  nor carriage returns. `keras.utils.Progbar` writes both even into a file
  (it takes any POSIX system for a terminal), counts a resumed run's earlier
  steps in its time per step, and prints the integer 0 as `0.0000e+00`.

  The time left is extrapolated from the steps of this process alone: the
  first `update` is the starting point (a resumed run calls it with the step
  it resumed at). Integers print as integers, other numbers with 4 decimals.

  The default stream is stderr, so stdout carries only a script's result.
  """

  def __init__(self, total, *, stream=None, interval_s=None):
    """Draws nothing yet.

    Args:
      total: the step at which the work is done.
      stream: where to write (a text stream); default `sys.stderr`.
      interval_s: least seconds between two lines; default 0.2 on a terminal
        and 30 otherwise.
    """
    self.total = total
    self._stream = sys.stderr if stream is None else stream
    self._terminal = self._stream.isatty()
    if interval_s is None:
      interval_s = 0.2 if self._terminal else 30.
    self._interval_s = interval_s
    self._start = None  # (time, step) of the first update.
    self._step, self._values = None, {}
    self._last_write = None  # Time of the last line written.
    self._width = 0  # Of the line on the terminal, to blank its remains.

  def update(self, step, **values):
    """Records that `step` steps are done, with `values`, and maybe writes."""
    now = time.monotonic()
    if self._start is None:
      self._start = (now, step)
    self._step, self._values = step, values
    if self._last_write is None or now - self._last_write >= self._interval_s:
      self._write(now, final=False)

  def close(self):
    """Writes the last state with the time taken; ends the terminal's line."""
    if self._step is None:
      return
    self._write(time.monotonic(), final=True)
    if self._terminal:
      self._stream.write('\n')
      self._stream.flush()
    self._step = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()  # Also on an exception: its message then starts a line.

  def _write(self, now, final):
    start_time, start_step = self._start
    seconds, done = now - start_time, self._step - start_step
    if final:
      timing = f'in {_duration(seconds)}'
    elif done > 0:
      timing = f'ETA {_duration(seconds / done * (self.total - self._step))}'
    else:
      timing = 'ETA ?'
    line = ' '.join([f'{self._step:>{len(str(self.total))}}/{self.total}',
                     timing] +
                    [f'{k}={_number(v)}' for k, v in self._values.items()])
    if self._terminal:
      filled = min(20 * self._step // max(self.total, 1), 20)
      line = f'[{"=" * filled}{" " * (20 - filled)}] {line}'
      self._stream.write('\r' + line.ljust(self._width))
      self._width = len(line)
    else:
      self._stream.write(f'step {line}\n')
    self._stream.flush()
    self._last_write = now


def _number(value):
  """An integer as one (not `0.0000e+00`), another number with 4 decimals."""
  if isinstance(value, numbers.Integral):
    return str(int(value))
  if isinstance(value, numbers.Real):
    return f'{float(value):.4f}'
  return str(value)


def _duration(seconds):
  """`seconds` as `m:ss` or `h:mm:ss`."""
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return (f'{hours}:{minutes:02}:{seconds:02}' if hours
          else f'{minutes}:{seconds:02}')


def exit_on_errors(main, exit_codes):
  """`main`, with the errors of `exit_codes` ending the program in one line.

  An exception of a class in `exit_codes` (or of a subclass) becomes
  `error: <message>` on stderr and the exit code that class maps to, with no
  traceback: the message says what to do, the traceback would bury it. Other
  exceptions keep their traceback; they are bugs.

      app.run(console.exit_on_errors(main, {
          config_lib.ConfigError: 2,
          data.DatasetUnavailableError: 1}))

  Args:
    main: the function to run.
    exit_codes: dict from exception class to exit code, the first matching
      class in order wins.

  Returns:
    A function taking `main`'s arguments.
  """
  @functools.wraps(main)
  def run(*args, **kwargs):
    try:
      return main(*args, **kwargs)
    except tuple(exit_codes) as error:
      print(f'error: {error}', file=sys.stderr)
      sys.exit(next(code for kind, code in exit_codes.items()
                    if isinstance(error, kind)))
  return run
