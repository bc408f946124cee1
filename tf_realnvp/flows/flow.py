"""The `Flow` distribution and the functions that read any flow."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.distributions import transformed_distribution

from tf_realnvp.bijectors.context import CONDITIONAL_INPUT
from tf_realnvp.bijectors.context import takes_context
from tf_realnvp.bijectors.context_chain import ContextChain
from tf_realnvp.bijectors.coupling import Coupling
from tf_realnvp.bijectors.reversible import Reversible

tfb = tfp.bijectors
tfd = tfp.distributions


class Flow(transformed_distribution._TransformedDistribution):  # pylint: disable=protected-access
  """A flow: `tfd.TransformedDistribution` of a base through a bijector,
  in its own words where TFP's would mislead.

  * Events: a tensor must have the flow's dtype, and NumPy arrays and
    Python values must hold floats (TFP would cast them): integers are
    refused with a `TypeError` naming the dtype, since 8-bit pixels need
    dequantization, not a cast, to be events of an image flow's density.
  * `cdf`, `quantile`, `entropy`, `mean`, `mode`, `stddev`, `variance`,
    `covariance`: no closed form for a flow; `NotImplementedError` says so
    and what to do instead (TFP's message names an internal method).
  * Name: `name=None` gives the flow its `default_name` ('realnvp', 'maf',
    ...) without making it explicit, so inside a `JointDistributionSequential`
    the flow is named by the argument that refers to it, as TFP's own
    distributions are.
  """

  def __init__(self, distribution, bijector, validate_args=False, name=None,
               default_name='flow'):
    parameters = dict(locals())
    super().__init__(distribution, bijector, validate_args=validate_args,
                     parameters=parameters, name=name or default_name)

  @classmethod
  def _parameter_properties(cls, dtype, num_classes=None):
    return transformed_distribution._TransformedDistribution._parameter_properties(  # pylint: disable=protected-access
        dtype, num_classes=num_classes)

  def _checked_events(self, value, method):
    dtype = getattr(value, 'dtype', None)
    if dtype is None:  # Python values: TFP converts them.
      dtype = np.asarray(value).dtype
    dtype = tf.as_dtype(dtype)
    wrong = (dtype != self.dtype if tf.is_tensor(value)
             else not dtype.is_floating)
    if wrong:
      raise TypeError(
          f'{self.name}.{method}: events must be {self.dtype.name}, got '
          f'{dtype.name}. Cast them, e.g. tf.cast(x, {self.dtype.name!r}); '
          '8-bit pixels need dequantization first (x + uniform noise in '
          '[0, 1), tf_realnvp.data.dequantize).')
    return value

  def log_prob(self, value, name='log_prob', **kwargs):
    return super().log_prob(self._checked_events(value, 'log_prob'), name,
                            **kwargs)

  def prob(self, value, name='prob', **kwargs):
    return super().prob(self._checked_events(value, 'prob'), name, **kwargs)

  def _not_tractable(self, what, instead):
    raise NotImplementedError(
        f'{self.name}: a normalizing flow has no closed-form {what}; '
        f'{instead}')

  def _cdf(self, value, **kwargs):
    self._not_tractable('cdf', 'estimate it from samples.')

  _log_cdf = _survival_function = _log_survival_function = _cdf

  def _quantile(self, value, **kwargs):
    self._not_tractable('quantile', 'estimate it from samples.')

  def _entropy(self, **kwargs):
    self._not_tractable(
        'entropy', 'estimate it as -mean(log_prob(sample(n))).')

  def _moment(self, what):
    self._not_tractable(
        what, 'estimate it from samples, e.g. over flow.sample(10000).')

  def _mean(self, **kwargs):
    self._moment('mean')

  def _mode(self, **kwargs):
    self._moment('mode')

  def _stddev(self, **kwargs):
    self._moment('stddev')

  def _variance(self, **kwargs):
    self._moment('variance')

  def _covariance(self, **kwargs):
    self._moment('covariance')


def from_data_to_latent(layers, event_shape, dtype=tf.float32,
                        validate_args=False, name=None, default_name='flow',
                        reversible=False):
  """The flow whose data-to-latent map applies `layers` in list order.

      log p(x) = log N(f(x); 0, I) + log|det df/dx|,   f = layers[-1] o ... o layers[0]

  Every bijector of `tf_realnvp.bijectors` maps data to latent in `forward`,
  as the paper writes its equations; TFP's distributions sample through
  `bijector.forward`, so the flow's bijector is `Invert(f)`. Every flow of
  this package is built here, RealNVP as well as the flows it is compared
  with (whose TFP bijectors enter `layers` as `tfb.Invert(...)`). The
  result is a `Flow` named `name`, or `default_name` when it is `None`.
  With `reversible`, training rebuilds the layers' inputs from their outputs
  instead of keeping them (`bijectors.Reversible`).
  """
  base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)),
                    sample_shape=event_shape)
  chain = sequence(layers)
  return Flow(base, tfb.Invert(Reversible(chain) if reversible else chain),
              validate_args=validate_args, name=name,
              default_name=default_name)


def with_temperature(flow, temperature):
  """The same flow over a base `N(0, temperature^2 I)`, for sampling.

  Temperatures below 1 trade diversity for sample quality (Kingma & Dhariwal,
  2018). The returned distribution shares `flow`'s bijector and weights.
  """
  if not temperature > 0:
    raise ValueError(f'temperature must be positive, got {temperature}.')
  dtype = flow.dtype
  base = tfd.Sample(
      tfd.Normal(tf.zeros([], dtype), tf.constant(temperature, dtype)),
      sample_shape=flow.event_shape)
  return Flow(base, flow.bijector, default_name=flow.name)


def log_prob(flow, x, context=None):
  """`flow.log_prob(x)`, or `log p(x | context)` of a conditional flow."""
  if context is None:
    return flow.log_prob(x)
  return flow.log_prob(x, bijector_kwargs={CONDITIONAL_INPUT: context})


def sample(flow, n, seed, context=None):
  """`n` samples of `flow`, or of `p(x | context)` for a conditional flow."""
  if context is None:
    return flow.sample(n, seed=seed)
  return flow.sample(n, seed=seed,
                     bijector_kwargs={CONDITIONAL_INPUT: context})


def context_of(flow):
  """The `Context` `flow` (a distribution or bijector) is conditioned on, or
  `None` for an unconditional flow."""
  for module in flow.submodules:
    if takes_context(module) and getattr(module, 'context', None):
      return module.context
  return None


def couplings(flow):
  """Every coupling layer (`AffineCoupling`, `SplineCoupling`) inside `flow`
  (a distribution or bijector)."""
  return [m for m in flow.submodules if isinstance(m, Coupling)]


def weight_scale_l2(flow):
  """Sum of squares of the s/t networks' weight-normalization gains.

  The paper trains with `5e-5 * weight_scale_l2(flow)` added to the negative
  log-likelihood (Dinh et al. 2017, Sec. 4.1). Zero for a flow without
  couplings (MAF, IAF, FFJORD).
  """
  gains = [g for layer in couplings(flow)
           for g in layer.conditioner.scale_weights]
  return tf.add_n([tf.reduce_sum(tf.square(g)) for g in gains]
                  or [tf.zeros([], flow.dtype)])


def sequence(bijectors):
  """A chain that applies `bijectors` in list order (first one first) and
  hands a context to those that read it (`ContextChain`)."""
  return ContextChain(list(reversed(bijectors)))
