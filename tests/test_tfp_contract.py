"""TFP's bijector contract, kept by every bijector class and flow family.

The properties TensorFlow Probability checks of its own bijectors, written
here: bijective and finite, the log-det of the autodiff Jacobian, the event
shape functions (static, tensor, unknown rank), several batch dimensions,
TFP's cache, `copy()` and slicing, `Invert` and `Chain`, the distributions
built on a bijector (`TransformedDistribution`, `tfd.Sample`,
`JointDistributionSequential`), XLA, `tf.vectorized_map` and gradients.
Every case has its weights moved away from the identity first. A property
that does not apply to a case is skipped with the reason. XLA and
`vectorized_map` take one image flow (`COMPILED_FLOWS`): the others are
compositions of layers each checked on its own.
"""

import contextlib
import dataclasses
import functools
from typing import Callable, Dict, Optional, Tuple

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_realnvp
from tf_realnvp import bijectors
from tf_realnvp import networks
from tf_realnvp import training_mode
from tf_realnvp.bijectors.conditional_prior import ConditionalPrior
from tf_realnvp.bijectors.context import Context
from tf_realnvp.flows.realnvp import noise_couplings

tfb = tfp.bijectors
tfd = tfp.distributions

LABELS = Context(num_classes=3)
VECTORS = Context(size=4)
PIXELS = (0., 256.)
# Where a property does not apply to a case that depends on its batch.
BATCH_STATISTICS = ('in training mode the map normalizes with the batch\'s '
                    'statistics, so one event alone is not mapped as in a '
                    'batch')
INVERSE_IN_EVALUATION = ('the inverse normalizes with the running averages, '
                         'the forward in training mode with the batch\'s')
MOVES_AVERAGES = ('each call in training mode moves the running averages, '
                  'so no two calls compute the same map')


@dataclasses.dataclass(frozen=True)
class Case:
  """A data-to-latent bijector, the events it takes and its context.

  Attributes:
    make: builds the bijector (weights perturbed), or the flow with
      `flow=True` (the bijector is then its data-to-latent map).
    event_shape: shape of the events `forward` takes.
    support: `(low, high)` to draw inputs uniformly from; `None` for a
      standard Normal.
    context: what the bijector is conditioned on, or `None`.
    flow: whether `make` builds a flow (a `tfd.TransformedDistribution`).
    training: whether it runs in `training_mode.training()`.
    skip: `{property: why it does not apply}`.
    dtype: of the bijector and its inputs; the flows are float32, as users
      train them (some TF kernels differ by dtype), the layers float64, so
      the checks can be tight.
  """
  make: Callable
  event_shape: Tuple[int, ...]
  support: Optional[Tuple[float, float]] = None
  context: Optional[Context] = None
  flow: bool = False
  training: bool = False
  skip: Dict[str, str] = dataclasses.field(default_factory=dict)
  dtype: tf.DType = tf.float64

  def inputs(self, batch_shape, seed=1):
    rng = np.random.RandomState(seed)
    shape = tuple(batch_shape) + self.event_shape
    values = (rng.normal(size=shape) if self.support is None
              else rng.uniform(*self.support, size=shape))
    return tf.constant(values, self.dtype)

  def assert_close(self, actual, expected, tolerance=1.):
    """Equal within `tolerance` times the dtype's relative tolerance."""
    rtol = tolerance * (1e-8 if self.dtype == tf.float64 else 1e-4)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected),
                               rtol=rtol, atol=rtol)

  def kwargs(self, batch_shape):
    """`{'conditional_input': c}` for a batch, one context per event."""
    if self.context is None:
      return {}
    size = int(np.prod(batch_shape))
    if self.context.num_classes:
      value = np.arange(size) % self.context.num_classes
    else:
      value = np.random.RandomState(2).normal(size=(size, self.context.size))
    return dict(conditional_input=tf.constant(value.reshape(
        tuple(batch_shape) + value.shape[1:])))


def perturbed(make):
  return lambda: bijector_checks.perturb(make())


def conditional_coupling(mask, context):
  net = networks.MLPConditioner(mask.shape[-1], hidden_units=(16,),
                                context_features=context.features,
                                dtype='float64')
  return perturbed(lambda: bijectors.AffineCoupling(mask, net,
                                                    context=context))


def actnorm(channels):
  layer = bijectors.ActNorm(channels, dtype=tf.float64)
  layer.initialize(tf.random.stateless_normal([5, channels], [0, 1],
                                              dtype=tf.float64) * 3. + 2.)
  return bijector_checks.perturb(layer)


def batch_norm(channels):
  norm = bijectors.BatchNorm(channels, dtype=tf.float64)
  norm.running_mean.assign(np.linspace(-1., 1., channels))
  norm.running_variance.assign(np.linspace(0.5, 2., channels))
  return norm


TINY = dict(num_res_blocks=1, num_filters=4, num_coupling_layers=2,
            hidden_units=(8,), spline_bins=4)
# The paper's two scales (checkerboard and channel masks, squeezes, a
# factor-out) in the affine image flow; one scale of checkerboard couplings,
# on 2x2 images, in the other image flows. Additive couplings are checked
# in a vector flow and as an image layer.
ONE_SCALE = dict(num_scales=1)
SMALL = (2, 2, 3)


def flow(event_shape, **settings):
  """The case of a tiny float32 `RealNVP` of these settings."""
  context = (LABELS if 'num_classes' in settings
             else VECTORS if 'context_size' in settings else None)
  return Case(perturbed(lambda: tf_realnvp.RealNVP(
      event_shape, **{**TINY, **settings})), event_shape,
              support=PIXELS if len(event_shape) == 3 else None,
              context=context, flow=True, dtype=tf.float32)


CHECKERBOARD = bijectors.checkerboard_mask(4, 4, 2, parity=0)
CHANNEL = bijectors.channel_mask(2, 2, 4, parity=1)
VECTOR = bijectors.alternating_mask(5, parity=0)
SPLINE = dict(bins=4, bound=3.)

CASES = {
    'actnorm': Case(functools.partial(actnorm, 3), (2, 2, 3)),
    'conv1x1': Case(perturbed(functools.partial(
        bijectors.InvertibleConv1x1, 3, dtype=tf.float64)), (2, 2, 3)),
    'batch_norm_evaluation': Case(functools.partial(batch_norm, 3),
                                  (2, 2, 3)),
    'batch_norm_training': Case(
        functools.partial(batch_norm, 3), (2, 2, 3), training=True,
        skip=dict(several_batch_dimensions=BATCH_STATISTICS,
                  vectorized_map=BATCH_STATISTICS,
                  log_det=BATCH_STATISTICS,
                  bijective=INVERSE_IN_EVALUATION, copy=MOVES_AVERAGES,
                  compose=MOVES_AVERAGES, distributions=MOVES_AVERAGES,
                  xla=MOVES_AVERAGES)),
    'affine_checkerboard': Case(
        lambda: bijector_checks.coupling(CHECKERBOARD), (4, 4, 2)),
    'affine_channel': Case(lambda: bijector_checks.coupling(CHANNEL),
                           (2, 2, 4)),
    'affine_vector': Case(lambda: bijector_checks.coupling(VECTOR), (5,)),
    'additive_checkerboard': Case(
        lambda: bijector_checks.coupling(CHECKERBOARD, additive=True),
        (4, 4, 2)),
    'spline_checkerboard': Case(
        lambda: bijector_checks.coupling(CHECKERBOARD, spline=SPLINE),
        (4, 4, 2)),
    'spline_vector': Case(
        lambda: bijector_checks.coupling(VECTOR, spline=SPLINE), (5,)),
    'conditional_coupling_vectors': Case(
        conditional_coupling(VECTOR, VECTORS), (5,), context=VECTORS),
    'conditional_prior_labels': Case(
        perturbed(lambda: ConditionalPrior((2, 2, 3), LABELS,
                                           dtype=tf.float64)),
        (2, 2, 3), context=LABELS),
    'factor_out': Case(lambda: bijectors.FactorOut(
        bijector_checks.coupling(bijectors.checkerboard_mask(2, 2, 2, 0))),
                       (2, 2, 4)),
    'logit': Case(lambda: bijectors.LogitPreprocessing(
        dtype=tf.float64, validate_args=True), (2, 2, 3), support=PIXELS),
    'squeeze': Case(bijectors.Squeeze, (4, 4, 2)),
    'variational_dequantization': Case(perturbed(
        lambda: bijectors.VariationalDequantization(
            noise_couplings((2, 2, 3), tf.float64))), (2, 2, 3),
                                       support=PIXELS),
    'unsqueeze': Case(lambda: tfb.Invert(bijectors.Squeeze()), (2, 2, 8)),
    'flow_image_affine': flow((4, 4, 3)),
    'flow_image_spline': flow(SMALL, **ONE_SCALE, coupling='spline'),
    'flow_image_glow_labels': flow(SMALL, **ONE_SCALE, step='glow',
                                   conditional_prior=True,
                                   num_classes=LABELS.num_classes),
    'flow_vector_affine': flow((5,)),
    'flow_vector_additive': flow((5,), coupling='additive'),
    'flow_vector_spline': flow((5,), coupling='spline'),
    'flow_vector_glow': flow((5,), step='glow'),
    'flow_vector_vectors': flow((5,), context_size=VECTORS.size),
}


# Compiling (XLA) or vectorizing a whole image flow takes 10-20 s a flow;
# each of their layers is a case of its own, and the paper's flow, of the
# most kinds of layer, checks their composition.
COMPILED_FLOWS = ('flow_image_affine',)
COMPILED = [name for name, case in CASES.items() if not case.flow
            or len(case.event_shape) == 1 or name in COMPILED_FLOWS]


@functools.lru_cache(maxsize=None)
def _built(name):
  case = CASES[name]
  made = case.make()
  return (made.bijector.bijector, made) if case.flow else (made, None)


def given(name, prop):
  """The case, its bijector and its flow (`None` for a bare bijector), built
  once per worker; skips where `prop` does not apply."""
  case = CASES[name]
  if prop in case.skip:
    pytest.skip(case.skip[prop])
  return (case,) + _built(name)


def mode(case):
  return (training_mode.training() if case.training
          else contextlib.nullcontext())


def transform(bijector, case, x, kwargs, recompute=True):
  """`y`, the forward log-det at `x` and the inverse log-det at `y`; each
  computed anew unless not `recompute` (then from TFP's cache)."""
  fresh = tf.identity if recompute else lambda value: value
  ndims = len(case.event_shape)
  y = bijector.forward(x, **kwargs)
  fldj = bijector.forward_log_det_jacobian(fresh(x), ndims, **kwargs)
  ildj = bijector.inverse_log_det_jacobian(fresh(y), ndims, **kwargs)
  return y, fldj, ildj


@pytest.mark.parametrize('name', CASES)
def test_bijective_and_finite(name):
  case, bijector, _ = given(name, 'bijective')
  x, kwargs = case.inputs([4]), case.kwargs([4])
  with mode(case):
    y, fldj, ildj = transform(bijector, case, x, kwargs)
    x_again = bijector.inverse(tf.identity(y), **kwargs)
  for value in (y, fldj, ildj, x_again):
    assert np.all(np.isfinite(value))
  case.assert_close(x_again, x)
  case.assert_close(ildj, -fldj)
  if y.shape == x.shape:
    assert not np.allclose(y, x, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('name', CASES)
def test_log_det_is_the_autodiff_jacobians(name):
  case, bijector, _ = given(name, 'log_det')
  x, kwargs = case.inputs([2]), case.kwargs([2])
  with mode(case):
    sign, expected = np.linalg.slogdet(
        bijector_checks.flat_jacobian(bijector, x, **kwargs))
    fldj = bijector.forward_log_det_jacobian(
        tf.identity(x), len(case.event_shape), **kwargs)
  assert np.all(sign != 0)
  case.assert_close(np.broadcast_to(fldj, [2]), expected, tolerance=10.)


@pytest.mark.parametrize('name', CASES)
def test_event_shape_functions_static_tensor_and_unknown_rank(name):
  case, bijector, _ = given(name, 'event_shape')
  x, kwargs = case.inputs([2, 3]), case.kwargs([2, 3])
  with mode(case):
    y = bijector.forward(x, **kwargs)
  assert bijector.forward_event_shape(x.shape) == y.shape
  assert bijector.inverse_event_shape(y.shape) == x.shape
  np.testing.assert_array_equal(
      bijector.forward_event_shape_tensor(tf.shape(x)), tf.shape(y))
  np.testing.assert_array_equal(
      bijector.inverse_event_shape_tensor(tf.shape(y)), tf.shape(x))
  unknown = tf.TensorShape(None)
  assert bijector.forward_event_shape(unknown).is_compatible_with(y.shape)
  assert bijector.inverse_event_shape(unknown).is_compatible_with(x.shape)
  unknown_sizes = tf.TensorShape([None] * x.shape.rank)
  assert bijector.forward_event_shape(unknown_sizes).is_compatible_with(
      y.shape)


@pytest.mark.parametrize('name', CASES)
def test_several_batch_dimensions_give_each_event_its_own_result(name):
  case, bijector, _ = given(name, 'several_batch_dimensions')
  x, kwargs = case.inputs([2, 3]), case.kwargs([2, 3])
  y, fldj, ildj = transform(bijector, case, x, kwargs)
  case.assert_close(bijector.inverse(tf.identity(y), **kwargs), x)
  assert np.broadcast_to(fldj, [2, 3]).shape == (2, 3)
  one = {key: value[1, 2] for key, value in kwargs.items()}
  y_one, fldj_one, ildj_one = transform(bijector, case, x[1, 2], one)
  case.assert_close(y_one, y[1, 2])
  case.assert_close(fldj_one, np.broadcast_to(fldj, [2, 3])[1, 2])
  case.assert_close(ildj_one, np.broadcast_to(ildj, [2, 3])[1, 2])


@pytest.mark.parametrize('name', CASES)
def test_cache_hands_back_the_input_of_each_direction(name):
  case, bijector, _ = given(name, 'cache')
  x, kwargs = case.inputs([2]), case.kwargs([2])
  with mode(case):
    y = bijector.forward(x, **kwargs)
    assert bijector.inverse(y, **kwargs) is x
    z = tf.identity(y)
    x_from_z = bijector.inverse(z, **kwargs)
    assert bijector.forward(x_from_z, **kwargs) is z


@pytest.mark.parametrize('name', CASES)
def test_copy_and_slice_share_the_variables_and_the_map(name):
  case, bijector, _ = given(name, 'copy')
  x, kwargs = case.inputs([2]), case.kwargs([2])
  refs = {v.ref() for v in bijector.variables}
  with mode(case):
    y, fldj, _ = transform(bijector, case, x, kwargs)
    for copy in (bijector.copy(), bijector[...]):
      assert {v.ref() for v in copy.variables} == refs
      y_copy, fldj_copy, _ = transform(copy, case, tf.identity(x), kwargs)
      case.assert_close(y_copy, y)
      case.assert_close(fldj_copy, fldj)


# The compositions and distributions below are handed the same `x` tensor:
# the bijector's results come from TFP's cache, computed once (the other
# properties check them); what is checked is how TFP composes them.


@pytest.mark.parametrize('name', CASES)
def test_invert_and_chain_compose_it(name):
  case, bijector, _ = given(name, 'compose')
  x, kwargs = case.inputs([2]), case.kwargs([2])
  ndims = len(case.event_shape)
  with mode(case):
    y, fldj, _ = transform(bijector, case, x, kwargs, recompute=False)
    inverted = tfb.Invert(bijector)
    case.assert_close(inverted.inverse(x, **kwargs), y)
    case.assert_close(inverted.inverse_log_det_jacobian(x, ndims, **kwargs),
                      fldj)
    chain = tfb.Chain([tfb.Scale(tf.constant(2., case.dtype)), bijector])
    routed = {bijector.name: kwargs}
    case.assert_close(chain.forward(x, **routed), 2. * y)
    case.assert_close(chain.forward_log_det_jacobian(x, ndims, **routed),
                      fldj + np.log(2.) * np.prod(y.shape[1:]))


@pytest.mark.parametrize('name', CASES)
def test_distributions_built_on_it(name):
  """`TransformedDistribution`, `tfd.Sample` of it, a joint distribution."""
  case, bijector, _ = given(name, 'distributions')
  x, kwargs = case.inputs([3, 2]), case.kwargs([3, 2])
  ndims = len(case.event_shape)
  with mode(case):
    y = bijector.forward(x, **kwargs)
    base = tfd.Sample(tfd.Normal(tf.constant(0., case.dtype), 1.),
                      y.shape[2:])
    dist = tfd.TransformedDistribution(base, tfb.Invert(bijector))
    expected = base.log_prob(y) + bijector.forward_log_det_jacobian(
        x, ndims, **kwargs)
    case.assert_close(dist.log_prob(x, bijector_kwargs=kwargs), expected)
    if case.context is not None:
      return  # Sample and joint distributions pass no bijector_kwargs.
    case.assert_close(tfd.Sample(dist, 2).log_prob(x),
                      tf.reduce_sum(expected, -1))
    axes = list(range(-ndims, 0))
    joint = tfd.JointDistributionSequential([
        dist, lambda v: tfd.Normal(tf.reduce_mean(v, axes), 1.)])
    w = tf.zeros([3, 2], case.dtype)
    case.assert_close(
        joint.log_prob([x, w]),
        expected + tfd.Normal(tf.reduce_mean(x, axes), 1.).log_prob(w))


@pytest.mark.parametrize('name', COMPILED)
def test_xla_computes_what_eager_does(name):
  case, bijector, _ = given(name, 'xla')
  x, kwargs = case.inputs([2]), case.kwargs([2])

  @tf.function(jit_compile=True)
  def compiled(x, kwargs):
    with mode(case):
      return transform(bijector, case, x, kwargs, recompute=False)
  with mode(case):
    expected = transform(bijector, case, x, kwargs)
  for got, want in zip(compiled(x, kwargs), expected):
    case.assert_close(got, want)


@pytest.mark.parametrize('name', COMPILED)
def test_vectorized_map_computes_each_events_result(name):
  case, bijector, _ = given(name, 'vectorized_map')
  x, kwargs = case.inputs([3]), case.kwargs([3])

  def one(args):
    return transform(bijector, case, *args, recompute=False)
  with mode(case):
    mapped = tf.vectorized_map(one, (x, kwargs))
    batched = transform(bijector, case, x, kwargs)
  for got, want in zip(mapped, batched):
    case.assert_close(got, np.broadcast_to(want, got.shape))


@pytest.mark.parametrize('name', CASES)
def test_gradients_are_finite_and_reach_every_weight(name):
  case, bijector, _ = given(name, 'gradients')
  x, kwargs = case.inputs([3]), case.kwargs([3])
  weights = bijector.trainable_variables
  with tf.GradientTape() as tape, mode(case):
    tape.watch(x)
    y = bijector.forward(x, **kwargs)
    loss = 0.5 * tf.reduce_sum(tf.square(y)) - tf.reduce_sum(
        bijector.forward_log_det_jacobian(x, len(case.event_shape), **kwargs))
  gradients = tape.gradient(loss, [x] + list(weights))
  for variable, gradient in zip([x] + list(weights), gradients):
    assert gradient is not None, variable.name
    assert np.all(np.isfinite(gradient)), variable.name
    assert np.any(np.asarray(gradient) != 0), variable.name


FLOWS = [name for name, case in CASES.items() if case.flow]


@pytest.mark.parametrize('name', FLOWS)
def test_flow_samples_and_densities_with_several_batch_dimensions(name):
  case, _, flow = given(name, 'flow')
  x, kwargs = case.inputs([2, 3]), case.kwargs([2, 3])
  log_prob = flow.log_prob(x, bijector_kwargs=kwargs)
  assert log_prob.shape == (2, 3)
  one = {key: value[1, 2] for key, value in kwargs.items()}
  case.assert_close(flow.log_prob(x[1, 2], bijector_kwargs=one), log_prob[1, 2])
  case.assert_close(
      flow.copy().log_prob(tf.identity(x), bijector_kwargs=kwargs), log_prob)
  samples = flow.sample([2, 3], seed=[1, 2], bijector_kwargs=kwargs)
  assert samples.shape == (2, 3) + case.event_shape
  if case.support:  # Samples come from the whole support of the logit.
    samples = tf.clip_by_value(samples, 0., 255.)
  assert np.all(np.isfinite(flow.log_prob(tf.identity(samples),
                                          bijector_kwargs=kwargs)))
  if case.context is None:
    sampled = tfd.Sample(flow, 2)
    draws = sampled.sample(3, seed=[3, 4])
    assert draws.shape == (3, 2) + case.event_shape
    pairs = tf.reshape(x, (3, 2) + case.event_shape)
    case.assert_close(sampled.log_prob(pairs),
          tf.reduce_sum(tf.reshape(log_prob, [3, 2]), -1))
