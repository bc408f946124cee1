"""RealNVP as a TFP distribution: the multi-scale flow of Dinh et al. (2017)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import networks
from tf_realnvp import recompute as recompute_lib
from tf_realnvp.bijectors import masks
from tf_realnvp.bijectors import spline_coupling
from tf_realnvp.bijectors.actnorm import ActNorm
from tf_realnvp.bijectors.affine_coupling import AffineCoupling
from tf_realnvp.bijectors.batch_norm import BatchNorm
from tf_realnvp.bijectors.conditional_prior import ConditionalPrior
from tf_realnvp.bijectors.context import Context
from tf_realnvp.bijectors.factor_out import FactorOut
from tf_realnvp.bijectors.invertible_conv import InvertibleConv1x1
from tf_realnvp.bijectors.logit import LogitPreprocessing
from tf_realnvp.bijectors.reversible import Reversible
from tf_realnvp.bijectors.spline_coupling import SplineCoupling
from tf_realnvp.bijectors.squeeze import Squeeze
from tf_realnvp.bijectors.variational_dequantization import (
    VariationalDequantization)
from tf_realnvp.flows.flow import from_data_to_latent
from tf_realnvp.flows.flow import sequence

tfb = tfp.bijectors
tfd = tfp.distributions

COUPLINGS = ('affine', 'additive', 'spline')
STEPS = ('realnvp', 'glow')
DEQUANTIZATIONS = ('uniform', 'variational')
# The variational dequantizer's noise flow: couplings, and the residual
# blocks and feature maps of each coupling's network.
NOISE_COUPLINGS = 4
NOISE_BLOCKS = 2
NOISE_FILTERS = 32


def RealNVP(event_shape, *, num_scales=2, num_res_blocks=8, num_filters=64,
            num_coupling_layers=8, hidden_units=(128, 128), coupling='affine',
            step='realnvp', batch_norm_couplings=False,
            double_filters_at_squeeze=False, conditioner_options=None,
            num_classes=0, context_size=0, conditional_prior=False,
            spline_bins=spline_coupling.BINS,
            spline_bound=spline_coupling.BOUND, alpha=0.05,
            dequantization='uniform', recompute='none', dtype=tf.float32,
            network_dtype=None, validate_args=True, name=None):
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
  With `dequantization='variational'`, `f` starts with a
  `VariationalDequantization`: a learned map of each pixel cell `[k, k+1)`
  onto itself (Flow++'s learned noise `q(u | x)`, a flow of
  `NOISE_COUPLINGS` affine couplings whose ResNets read the image), so
  `log_prob` of a uniformly dequantized image `x + w` is
  `log p(x + u) - log q(u | x)`, a one-sample estimate of the variational
  bound on the image's discrete likelihood, in the same bits/dim as
  uniform dequantization's; the flow's samples are unchanged by it.
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
  the batch's statistics inside `tf_realnvp.training_mode.training()`, where an
  example's `log_prob` depends on the rest of its batch (a training
  objective), and running averages otherwise, where `log_prob` is an exact
  per-example density. Statistics are synchronized across replicas.

  Memory in training, `recompute` (`tf_realnvp.recompute`): `'none'` keeps
  every activation for backpropagation; `'networks'` keeps only each s/t
  network's input and runs the network again in the backward pass, each
  residual block once more from its own input;
  `'invertible'` keeps only the couplings' output and rebuilds each layer's
  input from its output with the inverse (`bijectors.Reversible`), so memory
  does not grow with depth (not with `batch_norm_couplings`, whose inverse
  needs the statistics of the input it rebuilds). The density, the samples
  and the variables are the same in each mode, and so are the gradients:
  to the bit with `'networks'`, to float32 round-off with `'invertible'`.

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
    dequantization: images: `'uniform'` (the density is `p` itself, trained
      on `x + U[0, 1)` noise, as in the paper) or `'variational'` (the
      noise is learned, Ho et al. 2019; see above).
    recompute: `'none'`, `'networks'` or `'invertible'`: what training
      recomputes instead of keeping (see above).
    dtype: float dtype of the flows.
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
  if dequantization not in DEQUANTIZATIONS:
    raise ValueError(f'dequantization must be one of {DEQUANTIZATIONS}, got '
                     f'{dequantization!r}.')
  recompute_lib.check_mode(recompute)
  if recompute == 'invertible' and batch_norm_couplings:
    raise ValueError(
        "recompute='invertible' rebuilds each layer's input from its output, "
        'which a BatchNorm bijector in training mode cannot (it normalizes '
        "with the statistics of that input). Use recompute='networks'.")
  event_shape = _check_event_shape(event_shape)
  if dequantization == 'variational' and len(event_shape) != 3:
    raise ValueError(
        "dequantization='variational' learns the noise added to 8-bit "
        f'pixels; vectors of shape {event_shape} are continuous data. Use '
        "dequantization='uniform' (the default) for them.")
  context = (Context(num_classes=num_classes, size=context_size)
             if num_classes or context_size else None)
  if conditional_prior and context is None:
    raise ValueError('conditional_prior needs a context: num_classes or '
                     'context_size.')
  spline = (dict(bins=spline_bins, bound=spline_bound)
            if coupling == 'spline' else None)
  settings = dict(additive=coupling == 'additive', spline=spline,
                  glow=step == 'glow',
                  normalize_outputs=batch_norm_couplings,
                  recompute_network=recompute == 'networks', dtype=dtype,
                  network_dtype=network_dtype or dtype.name, context=context,
                  validate_args=validate_args, **(conditioner_options or {}))
  with tf.name_scope(name or flow_name(coupling, step)):
    if len(event_shape) == 3:
      check_scales(event_shape, num_scales)
      layers = ([VariationalDequantization(
          noise_couplings(event_shape, dtype, network_dtype or dtype.name,
                          validate_args), validate_args=validate_args)]
                if dequantization == 'variational' else []) + [
          LogitPreprocessing(alpha=alpha, dtype=dtype,
                             validate_args=validate_args),
          _scale(event_shape, num_scales, num_res_blocks, num_filters,
                 double_filters_at_squeeze, **settings)]
      if recompute == 'invertible':  # Not the dequantization: it draws noise.
        layers[-1] = Reversible(layers[-1])
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
        default_name=flow_name(coupling, step),
        reversible=recompute == 'invertible' and len(event_shape) == 1)


def flow_name(coupling='affine', step='realnvp'):
  """'realnvp', 'nice', 'nsf' or 'glow': the name of the flow these choices
  make."""
  if step == 'glow':
    return 'glow'
  return {'additive': 'nice', 'spline': 'nsf'}.get(coupling, 'realnvp')


def noise_couplings(event_shape, dtype=tf.float32, network_dtype=None,
                    validate_args=False):
  """The noise flow `g` of a `VariationalDequantization` of `(H, W, C)`
  images: `NOISE_COUPLINGS` affine couplings of the `[H, W, 2C]` noise and
  image, checkerboard masks of alternating parity on the noise and the image
  always kept, each with a ResNet of `NOISE_BLOCKS` blocks of
  `NOISE_FILTERS` feature maps; the identity until trained."""
  height, width, channels = event_shape
  keep_image = np.ones(event_shape, np.float32)
  return sequence([
      AffineCoupling(
          np.concatenate([masks.checkerboard_mask(
              height, width, channels, i % 2), keep_image], axis=-1),
          networks.ResNetConditioner(
              2 * channels, num_blocks=NOISE_BLOCKS,
              num_filters=NOISE_FILTERS,
              dtype=network_dtype or tf.as_dtype(dtype).name),
          validate_args=validate_args)
      for i in range(NOISE_COUPLINGS)])


def _diagonal_scaling(event_shape, dtype):
  """NICE's last layer, `z = exp(s) * h` with a learned `s` per dimension.

  Additive couplings have unit Jacobian determinant; this layer is what lets
  NICE change volume, `log|det| = sum(s)` (Dinh et al. 2015, Sec. 3.3).
  """
  log_scale = tf.Variable(tf.zeros(event_shape, dtype), name='log_scale')
  return tfb.Scale(log_scale=log_scale)


def _coupling(mask, conditioner_class, additive, spline, glow,
              normalize_outputs, recompute_network, dtype, network_dtype,
              context, validate_args, **network_kwargs):
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
                              recompute_network=recompute_network,
                              validate_args=validate_args)
  else:
    coupling = AffineCoupling(mask, conditioner, additive=additive,
                              context=context,
                              recompute_network=recompute_network,
                              validate_args=validate_args)
  step = [coupling]
  if glow:
    step = [ActNorm(channels, dtype=dtype, validate_args=validate_args),
            InvertibleConv1x1(channels, dtype=dtype,
                              validate_args=validate_args)] + step
  if normalize_outputs:
    step.append(BatchNorm(channels, dtype=dtype, validate_args=validate_args))
  return step[0] if len(step) == 1 else sequence(step)


def _scale(shape, num_scales, num_blocks, num_filters,
           double_filters_at_squeeze, **settings):
  """Data-to-latent map of one scale and, through `FactorOut`, all later ones."""
  height, width, channels = shape
  resnet = dict(conditioner_class=networks.ResNetConditioner,
                num_blocks=num_blocks, **settings)
  if num_scales == 1:
    return sequence([
        _coupling(masks.checkerboard_mask(height, width, channels, i % 2),
                  num_filters=num_filters, **resnet) for i in range(4)])
  squeezed = (height // 2, width // 2, 4 * channels)
  next_scale = (height // 2, width // 2, 2 * channels)
  squeezed_filters = num_filters * (2 if double_filters_at_squeeze else 1)
  return sequence(
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

