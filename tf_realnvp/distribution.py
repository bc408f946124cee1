"""RealNVP as a TFP distribution: the multi-scale flow of Dinh et al. (2017)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.distributions import transformed_distribution

from tf_realnvp import networks
from tf_realnvp.bijectors import masks
from tf_realnvp.bijectors import spline_coupling
from tf_realnvp.bijectors.actnorm import ActNorm
from tf_realnvp.bijectors.affine_coupling import AffineCoupling
from tf_realnvp.bijectors.batch_norm import BatchNorm
from tf_realnvp.bijectors.conditional_prior import ConditionalPrior
from tf_realnvp.bijectors.context import CONDITIONAL_INPUT
from tf_realnvp.bijectors.context import Context
from tf_realnvp.bijectors.context import takes_context
from tf_realnvp.bijectors.context_chain import ContextChain
from tf_realnvp.bijectors.coupling import Coupling
from tf_realnvp.bijectors.factor_out import FactorOut
from tf_realnvp.bijectors.invertible_conv import InvertibleConv1x1
from tf_realnvp.bijectors.logit import LogitPreprocessing
from tf_realnvp.bijectors.spline_coupling import SplineCoupling
from tf_realnvp.bijectors.squeeze import Squeeze

tfb = tfp.bijectors
tfd = tfp.distributions

COUPLINGS = ('affine', 'additive', 'spline')
STEPS = ('realnvp', 'glow')


def RealNVP(event_shape, *, num_scales=2, num_res_blocks=8, num_filters=64,
            num_coupling_layers=8, hidden_units=(128, 128), coupling='affine',
            step='realnvp', batch_norm_couplings=False,
            double_filters_at_squeeze=False, conditioner_options=None,
            num_classes=0, context_size=0, conditional_prior=False,
            spline_bins=spline_coupling.BINS,
            spline_bound=spline_coupling.BOUND, alpha=0.05,
            dtype=tf.float32, network_dtype=None, validate_args=True,
            name=None):
  """A RealNVP flow: `tfd.TransformedDistribution` over a standard Normal.

  With `f` the data-to-latent map built from coupling layers,

      log p(x) = log N(f(x); 0, I) + log|det df/dx|,      x = f^{-1}(z), z ~ N(0, I)

  The returned distribution's `bijector` is `Invert(f)` (TFP's bijectors map
  base samples to data), so `flow.bijector.inverse(x)` is `z = f(x)`.

  Images, `event_shape = (H, W, C)`: `f` is the logit preprocessing followed by
  the multi-scale architecture of the paper (Sec. 3.6, 4.1). Each scale but
  the last applies 3 checkerboard couplings (even, odd, even), a squeeze to
  `(H/2, W/2, 4C)`, 3 channel couplings (first, second, first half), then
  factors out half the channels and hands the rest to the next scale, whose
  ResNets have twice the feature maps; the last scale applies 4 checkerboard
  couplings. Each scale ends by undoing its squeeze, so the latent has the
  data's shape. The density is over dequantized intensities in `[0, 256)^D`
  (see `LogitPreprocessing` and `bits_per_dim`); samples are in pixel units.
  The defaults are the paper's CIFAR-10 model: 2 scales, 8 residual blocks,
  64 feature maps.

  Vectors, `event_shape = (D,)`: `num_coupling_layers` couplings with
  alternating masks (`[1, 0]`, `[0, 1]`, ... in 2-D) and MLP conditioners.

  The coupling: `'affine'` (the paper's, `AffineCoupling`), `'additive'`
  (NICE) or `'spline'` (`SplineCoupling`: each transformed entry through a
  monotone rational-quadratic spline of `spline_bins` bins on
  `[-spline_bound, spline_bound]`, Durkan et al. 2019's neural spline flow
  on this architecture).

  Glow steps, `step='glow'`: every coupling above becomes a step of flow of
  Glow (Kingma & Dhariwal 2018, Sec. 3): `ActNorm` (per-channel affine,
  initialized from the first batch it sees in the data direction, e.g. the
  first `log_prob`), then `InvertibleConv1x1` (a learned invertible mixing of
  the channels, LU-parameterized), then the coupling with its usual mask. The
  architecture, the masks and the networks are otherwise unchanged.

  Batch normalization, two independent options (Dinh et al. 2017, Sec. 3.7):
  `batch_norm_couplings=True` follows every coupling (every Glow step) with
  the paper's `BatchNorm` bijector, and `conditioner_options=dict(
  batch_norm=True)` puts batch normalization inside the s/t ResNets. Both use
  the batch's statistics inside `tf_realnvp.mode.training()`, where an
  example's `log_prob` depends on the rest of its batch (a training
  objective), and running averages otherwise, where `log_prob` is an exact
  per-example density. Statistics are synchronized across replicas.

  Conditional flows, `p(x | c)`: with `num_classes` (class labels) or
  `context_size` (real vectors), every s/t network adds a learned embedding
  of the context `c` to its first layer's output (at every position for
  images), and `conditional_prior=True` ends the data-to-latent map with a
  `ConditionalPrior`, a learned Normal prior per class (Glow's
  class-conditional prior). The context travels as `conditional_input`:

      flow.log_prob(x, bijector_kwargs={'conditional_input': labels})
      flow.sample(n, bijector_kwargs={'conditional_input': labels})

  A label (or vector) broadcasts against the batch: one for all, or one per
  example. A conditional flow refuses a call without a context, an
  unconditional one a call with one, and both any other keyword argument.

  Args:
    event_shape: `(H, W, C)` for images or `(D,)` for vectors.
    num_scales: images: scales of the multi-scale architecture; H and W must
      be divisible by `2**(num_scales - 1)` and the last scale at least 2x2.
    num_res_blocks: images: residual blocks per s/t network.
    num_filters: images: feature maps of the first scale's s/t networks.
    num_coupling_layers: vectors: number of coupling layers.
    hidden_units: vectors: hidden widths of each s/t MLP.
    coupling: `'affine'` (RealNVP), `'additive'` (NICE: volume-preserving
      couplings, then a learned diagonal scaling as the last layer) or
      `'spline'` (neural spline flow).
    step: `'realnvp'` (a coupling per step, as in the paper) or `'glow'`
      (actnorm, invertible 1x1 convolution, coupling).
    batch_norm_couplings: whether a `BatchNorm` bijector normalizes the
      output of every coupling.
    double_filters_at_squeeze: images: whether the channel couplings after
      each squeeze get twice the feature maps of the checkerboard couplings
      before it, so the width doubles wherever the resolution halves (as in
      the PyTorch reference implementation); otherwise it doubles from one
      scale to the next.
    conditioner_options: further keyword arguments of every s/t network
      (`networks.ResNetConditioner` for images, `networks.MLPConditioner` for
      vectors), e.g. `dict(batch_norm=True)`.
    num_classes: condition on integer class labels in `[0, num_classes)`.
    context_size: condition on float context vectors of this length.
    conditional_prior: whether the prior's mean and scale depend on the
      context (needs `num_classes` or `context_size`).
    spline_bins: `coupling='spline'`: bins of each spline.
    spline_bound: `coupling='spline'`: each spline acts on
      `[-spline_bound, spline_bound]` and is the identity outside (images:
      in logit space).
    alpha: images: the logit preprocessing's `alpha`.
    dtype: float dtype of the distribution.
    network_dtype: dtype policy of the s/t networks, e.g. `'mixed_bfloat16'`;
      defaults to `dtype`. Coupling arithmetic and log-dets stay in `dtype`.
    validate_args: whether to check inputs at run time (pixel range). XLA
      drops such checks inside compiled code.
    name: name of the distribution (default: 'realnvp', 'nice', 'nsf' or
      'glow', after `coupling` and `step`, and not an explicit name: see
      `Flow`).

  Returns:
    A `Flow` (a `tfd.TransformedDistribution`) with event shape
    `event_shape`.

  Raises:
    ValueError, TypeError: for an event shape or setting the flow cannot use.

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  """
  dtype = tf.as_dtype(dtype)
  if not dtype.is_floating:
    raise TypeError(f'dtype must be a floating dtype, got {dtype.name}.')
  if coupling not in COUPLINGS:
    raise ValueError(f'coupling must be one of {COUPLINGS}, got {coupling!r}.')
  if step not in STEPS:
    raise ValueError(f'step must be one of {STEPS}, got {step!r}.')
  event_shape = _check_event_shape(event_shape)
  context = (Context(num_classes=num_classes, size=context_size)
             if num_classes or context_size else None)
  if conditional_prior and context is None:
    raise ValueError('conditional_prior needs a context: num_classes or '
                     'context_size.')
  spline = (dict(bins=spline_bins, bound=spline_bound)
            if coupling == 'spline' else None)
  settings = dict(additive=coupling == 'additive', spline=spline,
                  glow=step == 'glow',
                  normalize_outputs=batch_norm_couplings, dtype=dtype,
                  network_dtype=network_dtype or dtype.name, context=context,
                  validate_args=validate_args, **(conditioner_options or {}))
  with tf.name_scope(name or flow_name(coupling, step)):
    if len(event_shape) == 3:
      check_scales(event_shape, num_scales)
      layers = [
          LogitPreprocessing(alpha=alpha, dtype=dtype,
                             validate_args=validate_args),
          _scale(event_shape, num_scales, num_res_blocks, num_filters,
                 double_filters_at_squeeze,
                 **settings)]
    else:
      layers = [
          _coupling(masks.alternating_mask(event_shape[0], parity=i % 2),
                    networks.MLPConditioner, hidden_units=hidden_units,
                    **settings)
          for i in range(num_coupling_layers)]
    if coupling == 'additive':
      layers.append(_diagonal_scaling(event_shape, dtype))
    if conditional_prior:
      layers.append(ConditionalPrior(event_shape, context, dtype=dtype,
                                     validate_args=validate_args))
    return from_data_to_latent(
        layers, event_shape, dtype, validate_args=validate_args, name=name,
        default_name=flow_name(coupling, step))


def flow_name(coupling='affine', step='realnvp'):
  """'realnvp', 'nice', 'nsf' or 'glow': the name of the flow these choices
  make."""
  if step == 'glow':
    return 'glow'
  return {'additive': 'nice', 'spline': 'nsf'}.get(coupling, 'realnvp')


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
                        validate_args=False, name=None, default_name='flow'):
  """The flow whose data-to-latent map applies `layers` in list order.

      log p(x) = log N(f(x); 0, I) + log|det df/dx|,   f = layers[-1] o ... o layers[0]

  Every bijector of `tf_realnvp.bijectors` maps data to latent in `forward`,
  as the paper writes its equations; TFP's distributions sample through
  `bijector.forward`, so the flow's bijector is `Invert(f)`. Every flow of
  this package is built here, RealNVP as well as the flows it is compared
  with (whose TFP bijectors enter `layers` as `tfb.Invert(...)`). The
  result is a `Flow` named `name`, or `default_name` when it is `None`.
  """
  base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)),
                    sample_shape=event_shape)
  return Flow(base, tfb.Invert(_sequence(layers)),
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


def _sequence(bijectors):
  """A chain that applies `bijectors` in list order (first one first) and
  hands a context to those that read it (`ContextChain`)."""
  return ContextChain(list(reversed(bijectors)))


def _diagonal_scaling(event_shape, dtype):
  """NICE's last layer, `z = exp(s) * h` with a learned `s` per dimension.

  Additive couplings have unit Jacobian determinant; this layer is what lets
  NICE change volume, `log|det| = sum(s)` (Dinh et al. 2015, Sec. 3.3).
  """
  log_scale = tf.Variable(tf.zeros(event_shape, dtype), name='log_scale')
  return tfb.Scale(log_scale=log_scale)


def _coupling(mask, conditioner_class, additive, spline, glow,
              normalize_outputs, dtype, network_dtype, context, validate_args,
              **network_kwargs):
  """A coupling on `mask` (a `SplineCoupling` of `spline`'s `bins` and
  `bound` unless it is `None`, else an `AffineCoupling`), after actnorm and
  a 1x1 convolution if `glow`, before a `BatchNorm` bijector if
  `normalize_outputs`; conditioned on `context` unless it is `None`."""
  channels = mask.shape[-1]
  conditioner = conditioner_class(
      channels, additive=additive, dtype=network_dtype,
      context_features=context.features if context else 0,
      spline_bins=spline['bins'] if spline else 0, **network_kwargs)
  if spline:
    coupling = SplineCoupling(mask, conditioner, **spline, context=context,
                              validate_args=validate_args)
  else:
    coupling = AffineCoupling(mask, conditioner, additive=additive,
                              context=context, validate_args=validate_args)
  step = [coupling]
  if glow:
    step = [ActNorm(channels, dtype=dtype, validate_args=validate_args),
            InvertibleConv1x1(channels, dtype=dtype,
                              validate_args=validate_args)] + step
  if normalize_outputs:
    step.append(BatchNorm(channels, dtype=dtype, validate_args=validate_args))
  return step[0] if len(step) == 1 else _sequence(step)


def _scale(shape, num_scales, num_blocks, num_filters,
           double_filters_at_squeeze, **settings):
  """Data-to-latent map of one scale and, through `FactorOut`, all later ones."""
  height, width, channels = shape
  resnet = dict(conditioner_class=networks.ResNetConditioner,
                num_blocks=num_blocks, **settings)
  if num_scales == 1:
    return _sequence([
        _coupling(masks.checkerboard_mask(height, width, channels, i % 2),
                  num_filters=num_filters, **resnet) for i in range(4)])
  squeezed = (height // 2, width // 2, 4 * channels)
  next_scale = (height // 2, width // 2, 2 * channels)
  squeezed_filters = num_filters * (2 if double_filters_at_squeeze else 1)
  return _sequence(
      [_coupling(masks.checkerboard_mask(height, width, channels, i % 2),
                 num_filters=num_filters, **resnet) for i in range(3)]
      + [Squeeze()]
      + [_coupling(masks.channel_mask(*squeezed, i % 2),
                   num_filters=squeezed_filters, **resnet) for i in range(3)]
      + [FactorOut(_scale(next_scale, num_scales - 1, num_blocks,
                          2 * num_filters, double_filters_at_squeeze,
                          **settings)),
         tfb.Invert(Squeeze())])


def _check_event_shape(event_shape):
  try:
    event_shape = tuple(int(d) for d in event_shape)
  except (TypeError, ValueError):
    raise ValueError(
        f'event_shape must be a tuple of ints, got {event_shape!r}.') from None
  if len(event_shape) not in (1, 3):
    raise ValueError(
        'event_shape must be (H, W, C) for images or (D,) for vectors, got '
        f'{event_shape} (rank {len(event_shape)}).')
  if len(event_shape) == 1 and event_shape[0] < 2:
    raise ValueError(
        f'Vector events need at least 2 dimensions to couple, got {event_shape}.')
  if len(event_shape) == 3 and event_shape[-1] < 1:
    raise ValueError(
        f'Images need at least one channel, got event_shape={event_shape}.')
  return event_shape


def check_scales(event_shape, num_scales):
  """Raises if images of `event_shape` `(H, W, C)` cannot take `num_scales`."""
  height, width, _ = event_shape
  if num_scales < 1:
    raise ValueError(f'num_scales must be at least 1, got {num_scales}.')
  factor = 2 ** (num_scales - 1)
  if height % factor or width % factor:
    raise ValueError(
        f'With num_scales={num_scales} the image is squeezed {num_scales - 1} '
        f'times, so height and width must be divisible by {factor}; got '
        f'{height}x{width}.')
  if min(height, width) // factor < 2:
    raise ValueError(
        f'{height}x{width} images are too small for num_scales={num_scales}: '
        f'the last scale would be {height // factor}x{width // factor}, and a '
        'checkerboard coupling needs at least 2x2. Use fewer scales.')

