"""Coupling masks: the documented patterns of the paper's Figure 3."""

import numpy as np
import pytest

from tf_realnvp import bijectors

MASKS = {
    'checkerboard': lambda parity: bijectors.checkerboard_mask(3, 4, 2, parity),
    'channel': lambda parity: bijectors.channel_mask(2, 3, 6, parity),
    'alternating': lambda parity: bijectors.alternating_mask(5, parity),
}


@pytest.mark.parametrize('name', sorted(MASKS))
def test_parities_are_binary_complements(name):
  """Consecutive couplings alternate parity, so every entry gets transformed."""
  even, odd = MASKS[name](0), MASKS[name](1)
  assert even.dtype == np.float32
  assert set(np.unique(even)) == {0., 1.}
  np.testing.assert_array_equal(even + odd, 1.)


@pytest.mark.parametrize('parity', [0, 1])
def test_checkerboard_keeps_squares_whose_coordinates_sum_to_the_parity(parity):
  """b[i, j, c] = 1 where (i + j) % 2 == parity, the same in every channel."""
  mask = bijectors.checkerboard_mask(3, 5, 2, parity)
  assert mask.shape == (3, 5, 2)
  for i, j, c in np.ndindex(3, 5, 2):
    assert mask[i, j, c] == ((i + j) % 2 == parity)
  if parity == 0:
    np.testing.assert_array_equal(mask[:2, :3, 0], [[1, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize('parity, kept', [(0, [1, 1, 1, 0, 0, 0]),
                                          (1, [0, 0, 0, 1, 1, 1])])
def test_channel_mask_keeps_one_half_of_the_channels(parity, kept):
  mask = bijectors.channel_mask(2, 3, 6, parity)
  assert mask.shape == (2, 3, 6)
  np.testing.assert_array_equal(mask, np.broadcast_to(kept, (2, 3, 6)))


@pytest.mark.parametrize('size, parity, expected', [
    (2, 0, [1, 0]), (2, 1, [0, 1]), (5, 0, [1, 0, 1, 0, 1]),
    (5, 1, [0, 1, 0, 1, 0]),
])
def test_alternating_mask(size, parity, expected):
  np.testing.assert_array_equal(bijectors.alternating_mask(size, parity),
                                expected)
