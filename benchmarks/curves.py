"""A training run's test bits/dim curve, read at a time or a value.

A run is `{'bits_per_dim': {step: value}, 'seconds_per_step': s}`, as
`benchmarks.quality` records it (also the reference's, from
`benchmarks/reference_run.py`). No flags here: tests import it.
"""

import numpy as np


def at_time(run, seconds):
  """Test bits/dim at the last evaluation reached within `seconds`, or None."""
  reached = [step for step in sorted(run['bits_per_dim'])
             if step * run['seconds_per_step'] <= seconds]
  return run['bits_per_dim'][reached[-1]] if reached else None


def time_to_reach(run, target):
  """Seconds `run` takes to reach test bits/dim `target`, or None if it
  does not within its steps.

  The step is interpolated linearly between the last evaluation above
  `target` and the first at or below it (from the first evaluation if that
  one is already below), then priced at the run's seconds per step.
  """
  previous_step, previous_value = None, None
  for step in sorted(run['bits_per_dim']):
    value = run['bits_per_dim'][step]
    if value <= target:
      if previous_step is not None:
        step = previous_step + (step - previous_step) * (
            (previous_value - target) / (previous_value - value))
      return step * run['seconds_per_step']
    previous_step, previous_value = step, value
  return None


def mean_spread(values, digits=3):
  """'mean ± standard deviation' of the values that are not None, with
  `digits` decimals; the value alone if one, '-' if none."""
  values = [v for v in values if v is not None]
  if not values:
    return '-'
  if len(values) == 1:
    return f'{values[0]:.{digits}f}'
  return (f'{np.mean(values):.{digits}f} ± '
          f'{np.std(values, ddof=1):.{digits}f}')
