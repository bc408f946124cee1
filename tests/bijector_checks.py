"""Properties every bijector must have, written once and run on each one.

A test module lists its bijectors as `Case`s in the `CASES` of a subclass of
`BijectorProperties`; pytest then checks every property on every case:

- `inverse(forward(x)) == x`;
- the forward log-det equals `log|det J|` of the autodiff Jacobian of the
  flattened event;
- `ildj(y) == -fldj(x)` at `y = f(x)`, each computed in its own direction;
- a batch of any shape (none, two axes, an unknown size in a graph) gives
  each event the result it gets alone.

Two things would make these checks trivially true. Coupling layers start as
the identity (their last layer is zero-initialised), so cases `perturb` their
weights first. TFP caches `x <-> y` pairs by tensor, so `inverse(forward(x))`
would hand back `x` itself: `tf.identity` makes a fresh tensor wherever a
direction must really be recomputed.
"""

import dataclasses
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from tf_realnvp import bijectors
from tf_realnvp import networks


def perturb(module, scale=0.3, seed=0):
  """Moves every trainable weight of `module` away from its initialisation.

  Assigns independent `N(0, scale^2)` values to `module.trainable_variables`
  (a `tf.Module`, a distribution, or a Keras layer) and returns `module`.
  Variable constraints (MADE's autoregressive masks) are applied after, as
  Keras optimizers do after every update, and `ActNorm` layers are marked
  initialized so their first batch does not overwrite the new values.
  """
  rng = np.random.RandomState(seed)
  for variable in module.trainable_variables:
    variable.assign(rng.normal(0., scale, variable.shape).astype(
        tf.as_dtype(variable.dtype).as_numpy_dtype))
    if getattr(variable, 'constraint', None) is not None:
      variable.assign(variable.constraint(variable))
  for layer in getattr(module, 'submodules', ()):  # Keras layers have none.
    if isinstance(layer, bijectors.ActNorm):
      layer.initialized.assign(True)
  return module


def coupling(mask, additive=False, dtype='float64', spline=None):
  """A perturbed coupling with a tiny conditioner (ResNet for images, MLP):
  affine, additive, or with `spline=dict(bins=, bound=)` a spline."""
  options = dict(additive=additive, dtype=dtype,
                 spline_bins=spline['bins'] if spline else 0)
  if mask.ndim == 3:
    net = networks.ResNetConditioner(mask.shape[-1], num_blocks=1,
                                     num_filters=4, **options)
  else:
    net = networks.MLPConditioner(mask.shape[-1], hidden_units=(16, 16),
                                  **options)
  if spline:
    return perturb(bijectors.SplineCoupling(mask, net, **spline))
  return perturb(bijectors.AffineCoupling(mask, net, additive=additive))


def record_conditioner_calls(couplings):
  """Returns a list to which every conditioner call appends its coupling."""
  calls = []
  for layer in couplings:
    call = layer.conditioner.call
    layer.conditioner.call = (
        lambda x, call=call, layer=layer: calls.append(layer) or call(x))
  return calls


def flat_jacobian(bijector, x, **kwargs):
  """`d vec(f(x)) / d vec(x)` for each event of `x`: `[N, D_out, D_in]`;
  `kwargs` go to `forward`."""
  batch = x.shape[0]
  flat = tf.reshape(x, [batch, -1])
  with tf.GradientTape() as tape:
    tape.watch(flat)
    y = bijector.forward(tf.reshape(flat, x.shape), **kwargs)
    flat_y = tf.reshape(y, [batch, -1])
  return tape.batch_jacobian(flat_y, flat).numpy()


@dataclasses.dataclass(frozen=True)
class Case:
  """A bijector to check and the events to feed it.

  Attributes:
    make: builds the bijector, with weights already perturbed.
    event_shape: shape of the events `forward` takes.
    support: `(low, high)` to draw inputs uniformly from; `None` for a
      standard Normal.
    volume_preserving: whether `log|det J| = 0` everywhere. Otherwise the
      checks also require a log-det away from 0, so an identity map fails.
    dtype: dtype of the inputs (the bijector's).
    rtol: relative tolerance of the round trip and the log-dets.
  """
  make: Callable
  event_shape: Tuple[int, ...]
  support: Optional[Tuple[float, float]] = None
  volume_preserving: bool = False
  dtype: tf.DType = tf.float64
  rtol: float = 1e-9

  @property
  def event_ndims(self):
    return len(self.event_shape)

  def inputs(self, batch_shape, seed=1):
    rng = np.random.RandomState(seed)
    shape = tuple(batch_shape) + tuple(self.event_shape)
    values = (rng.normal(size=shape) if self.support is None
              else rng.uniform(*self.support, size=shape))
    return tf.constant(values, self.dtype)


class BijectorProperties:
  """Mixin of property tests, run on every case of the subclass's `CASES`."""

  CASES = {}

  def pytest_generate_tests(self, metafunc):
    if 'case' in metafunc.fixturenames:
      metafunc.parametrize('case', list(self.CASES.values()),
                           ids=list(self.CASES))

  def test_inverse_undoes_forward(self, case):
    bijector = case.make()
    x = case.inputs([3])
    y = bijector.forward(x)
    x_again = bijector.inverse(tf.identity(y))
    assert x_again is not x  # recomputed, not TFP's cached input
    np.testing.assert_allclose(x_again, x, rtol=case.rtol, atol=case.rtol)
    if y.shape == x.shape:
      assert not np.allclose(y, x, rtol=1e-3, atol=1e-3)

  def test_log_det_matches_autodiff_jacobian(self, case):
    bijector = case.make()
    x = case.inputs([2])
    sign, expected = np.linalg.slogdet(flat_jacobian(bijector, x))
    assert np.all(sign != 0)
    fldj = bijector.forward_log_det_jacobian(
        tf.identity(x), event_ndims=case.event_ndims)
    np.testing.assert_allclose(np.broadcast_to(fldj, [2]), expected,
                               rtol=100 * case.rtol, atol=100 * case.rtol)
    if case.volume_preserving:
      np.testing.assert_allclose(expected, 0., atol=100 * case.rtol)
    else:
      assert np.all(np.abs(expected) > 1e-3)

  def test_inverse_log_det_is_minus_forward_log_det(self, case):
    bijector = case.make()
    x = case.inputs([3])
    y = tf.identity(bijector.forward(x))
    fldj = bijector.forward_log_det_jacobian(
        tf.identity(x), event_ndims=case.event_ndims)
    ildj = bijector.inverse_log_det_jacobian(y, event_ndims=case.event_ndims)
    np.testing.assert_allclose(np.broadcast_to(ildj, [3]),
                               -np.broadcast_to(fldj, [3]),
                               rtol=case.rtol, atol=case.rtol)

  def test_any_batch_shape_gives_each_events_result(self, case):
    bijector = case.make()
    x = case.inputs([2, 2])
    y = bijector.forward(x)
    fldj = np.broadcast_to(bijector.forward_log_det_jacobian(
        x, event_ndims=case.event_ndims), [2, 2])
    np.testing.assert_allclose(bijector.inverse(tf.identity(y)), x,
                               rtol=case.rtol, atol=case.rtol)
    event = tf.identity(x[1, 0])  # not the first: batch order matters
    np.testing.assert_allclose(bijector.forward(event), y[1, 0],
                               rtol=case.rtol, atol=case.rtol)
    np.testing.assert_allclose(
        bijector.forward_log_det_jacobian(event, event_ndims=case.event_ndims),
        fldj[1, 0], rtol=case.rtol, atol=case.rtol)
    unknown_batch = tf.TensorSpec([None] + list(case.event_shape), case.dtype)
    forward = tf.function(bijector.forward, input_signature=[unknown_batch])
    events = tf.reshape(x, [4] + list(case.event_shape))
    np.testing.assert_allclose(forward(events),
                               tf.reshape(y, [4] + y.shape[2:].as_list()),
                               rtol=case.rtol, atol=case.rtol)
