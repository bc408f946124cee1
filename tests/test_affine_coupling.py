"""AffineCoupling: bijector properties for every mask; coupling structure."""

import re

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp import bijectors
from tf_realnvp import networks

MASKS = {
    'checkerboard_even': bijectors.checkerboard_mask(4, 4, 2, parity=0),
    'checkerboard_odd_3x5': bijectors.checkerboard_mask(3, 5, 2, parity=1),
    'channel_first_half': bijectors.channel_mask(2, 2, 4, parity=0),
    'channel_second_half': bijectors.channel_mask(2, 2, 4, parity=1),
    'vector_5d': bijectors.alternating_mask(5, parity=0),
    'vector_2d': bijectors.alternating_mask(2, parity=1),
}


def affine(mask):
  return bijector_checks.Case(lambda: bijector_checks.coupling(mask),
                              mask.shape)


def additive(mask):
  return bijector_checks.Case(
      lambda: bijector_checks.coupling(mask, additive=True), mask.shape,
      volume_preserving=True)


class TestCouplingProperties(bijector_checks.BijectorProperties):
  CASES = {
      **{name: affine(mask) for name, mask in MASKS.items()},
      'additive_checkerboard': additive(MASKS['checkerboard_even']),
      'additive_vector_5d': additive(MASKS['vector_5d']),
  }


@pytest.mark.parametrize('name', sorted(MASKS))
def test_jacobian_is_triangular_with_kept_entries_first(name):
  """Kept entries pass unchanged; the others are scaled and shifted.

  Ordered kept-first, the Jacobian is `[[I, 0], [dt/dx_kept, diag(exp s)]]`,
  and the block `dt/dx_kept` is not zero: the network sees the kept entries.
  """
  mask = MASKS[name].ravel().astype(bool)
  x = tf.random.stateless_normal((2,) + MASKS[name].shape, [0, 1],
                                dtype=tf.float64)
  jacobian = bijector_checks.flat_jacobian(
      bijector_checks.coupling(MASKS[name]), x)
  kept, changed = np.flatnonzero(mask), np.flatnonzero(~mask)
  np.testing.assert_array_equal(jacobian[:, kept][:, :, kept],
                                [np.eye(len(kept))] * 2)
  np.testing.assert_array_equal(jacobian[:, kept][:, :, changed], 0.)
  changed_block = jacobian[:, changed][:, :, changed]
  np.testing.assert_array_equal(
      changed_block * (1 - np.eye(len(changed))), 0.)
  assert np.abs(jacobian[:, changed][:, :, kept]).max() > 1e-2


def test_fresh_coupling_is_the_identity():
  """The zero-initialised head makes `t = s = 0`: y = x, log-det 0."""
  mask = MASKS['checkerboard_even']
  layer = bijectors.AffineCoupling(
      mask, networks.ResNetConditioner(2, num_blocks=1, num_filters=4))
  x = tf.random.normal((3,) + mask.shape)
  np.testing.assert_array_equal(layer.forward(x), x)
  np.testing.assert_array_equal(
      layer.forward_log_det_jacobian(x, event_ndims=3), 0.)


def test_conditioner_runs_once_for_output_and_log_det():
  """The greedy cache keeps the log-det: one network call per direction."""
  mask = MASKS['vector_5d']
  layer = bijector_checks.coupling(mask)
  calls = bijector_checks.record_conditioner_calls([layer])
  x = tf.random.normal((3, 5), dtype=tf.float64)
  y = layer.forward(x)
  fldj = layer.forward_log_det_jacobian(x, event_ndims=1)
  ildj = layer.inverse_log_det_jacobian(y, event_ndims=1)
  assert len(calls) == 1
  np.testing.assert_array_equal(ildj, -fldj)
  layer.inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
  assert len(calls) == 2


def test_mask_must_be_binary():
  with pytest.raises(ValueError, match='0 and 1'):
    bijectors.AffineCoupling(np.full((2,), 0.5),
                             networks.MLPConditioner(2, hidden_units=(4,)))


def test_additive_coupling_rejects_a_log_scale():
  layer = bijectors.AffineCoupling(
      MASKS['vector_2d'], networks.MLPConditioner(2, hidden_units=(4,)),
      additive=True)
  with pytest.raises(ValueError, match='log_scale=None'):
    layer.forward(tf.zeros((1, 2)))


@pytest.mark.parametrize('shape', [(2, 4, 4, 3), (2, 4, 4), (4,)])
def test_events_of_the_wrong_shape_are_rejected(shape):
  layer = bijector_checks.coupling(MASKS['checkerboard_even'],
                                   dtype='float32')
  for direction in (layer.forward, layer.inverse):
    with pytest.raises(ValueError, match=re.escape('(4, 4, 2)') + '.*'
                       + re.escape(str(shape))):
      direction(tf.zeros(shape))


@pytest.mark.parametrize('name, additive', [('checkerboard_even', False),
                                            ('channel_first_half', True),
                                            ('vector_5d', False)])
def test_empty_batch_gives_empty_results_without_the_conditioner(name,
                                                                 additive):
  """No events, no network call: oneDNN's float32 convolution (TF 2.21)
  hands back an empty input unchanged, with its own channel count. Traced
  with an unknown batch size, the network runs only on a non-empty batch."""
  mask = MASKS[name]
  layer = bijector_checks.coupling(mask, additive=additive, dtype='float32')
  calls = bijector_checks.record_conditioner_calls([layer])
  empty = tf.zeros((0,) + mask.shape)
  for y in (layer.forward(empty), layer.inverse(tf.identity(empty))):
    assert y.shape == empty.shape
  for log_det in (layer.forward_log_det_jacobian(tf.identity(empty),
                                                 event_ndims=mask.ndim),
                  layer.inverse_log_det_jacobian(tf.identity(empty),
                                                 event_ndims=mask.ndim)):
    assert log_det.shape == (0,) or additive and log_det.shape == ()
  assert not calls
  unknown_batch = tf.TensorSpec((None,) + mask.shape)
  forward, inverse = (tf.function(f, input_signature=[unknown_batch])
                      for f in (layer.forward, layer.inverse))
  assert forward(empty).shape == inverse(empty).shape == empty.shape
  x = tf.random.normal((2,) + mask.shape)
  np.testing.assert_allclose(forward(x), layer.forward(tf.identity(x)),
                             rtol=1e-6)
