"""Binary coupling masks of RealNVP (Dinh et al., 2017, Sec. 3.4, Figure 3)."""

import numpy as np


def checkerboard_mask(height, width, channels, parity):
  """Spatial checkerboard: `b[i, j, c] = 1` where `(i + j) % 2 == parity`.

  Parity 0 ("even") keeps the squares whose row and column sum to an even
  number; parity 1 ("odd") keeps the others. Every channel of a pixel shares
  the pixel's mask value.

  A mask `b` has the event's shape; `b = 1` marks the entries a coupling layer
  leaves unchanged and conditions on, `b = 0` the entries it transforms:

      y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))

  Consecutive couplings alternate `parity` so that every entry is transformed.
  """
  rows = np.arange(height)[:, None]
  cols = np.arange(width)[None, :]
  board = ((rows + cols) % 2 == parity).astype(np.float32)
  return np.repeat(board[:, :, None], channels, axis=2)


def channel_mask(height, width, channels, parity):
  """Channel-wise mask: parity 0 keeps the first half of the channels, 1 the second."""
  first_half = np.arange(channels) < channels // 2
  keep = first_half if parity == 0 else ~first_half
  return np.broadcast_to(keep.astype(np.float32), (height, width, channels)).copy()


def alternating_mask(size, parity):
  """Vector mask: `b[i] = 1` where `i % 2 == parity` (`[1, 0]` / `[0, 1]` in 2-D)."""
  return (np.arange(size) % 2 == parity).astype(np.float32)
