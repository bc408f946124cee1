"""Every kind of flow the project builds, in one registry: `FLOWS`."""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp.bijectors import spline_coupling
from tf_realnvp.flows.baselines import ffjord_flow
from tf_realnvp.flows.baselines import masked_autoregressive_flow
from tf_realnvp.flows.realnvp import RealNVP

tfd = tfp.distributions


def coupling_flow(dims, coupling='affine', step='realnvp', num_layers=8,
                  hidden_units=(128, 128), batch_norm_couplings=False,
                  num_classes=0, context_size=0, conditional_prior=False,
                  spline_bins=spline_coupling.BINS,
                  spline_bound=spline_coupling.BOUND, recompute='none',
                  dtype=tf.float32, network_dtype=None, validate_args=True):
  """RealNVP, NICE, NSF or Glow on vectors: `tf_realnvp.RealNVP((dims,),
  ...)`.

  `num_layers` couplings with alternating masks and MLP conditioners:
  affine (`coupling='affine'`, RealNVP), additive (`'additive'`, NICE,
  volume preserving, followed by NICE's learned diagonal scaling) or
  rational-quadratic splines of `spline_bins` bins on `[-spline_bound,
  spline_bound]` (`'spline'`, a neural spline flow). With
  `step='glow'` each coupling is preceded by `ActNorm` (data-initialized on
  the first `log_prob` batch) and `InvertibleConv1x1`, for vectors an
  invertible dense mixing that starts as a random rotation: Glow's step of
  flow. Both directions cost one network
  pass per layer. `batch_norm_couplings` follows every coupling with the
  paper's `BatchNorm` bijector. `network_dtype` is the conditioners' dtype
  policy (e.g. `'mixed_bfloat16'`). `num_classes`, `context_size` and
  `conditional_prior` make a conditional flow, and `recompute` trades
  training memory for time (see `tf_realnvp.RealNVP`).

  References: Dinh, Sohl-Dickstein, Bengio, Density estimation using Real
  NVP, ICLR 2017, https://arxiv.org/abs/1605.08803; Dinh, Krueger, Bengio,
  NICE, ICLR 2015 workshop, https://arxiv.org/abs/1410.8516; Durkan,
  Bekasov, Murray, Papamakarios, Neural Spline Flows, NeurIPS 2019,
  https://arxiv.org/abs/1906.04032; Kingma,
  Dhariwal, Glow: Generative Flow with Invertible 1x1 Convolutions, NeurIPS
  2018, https://arxiv.org/abs/1807.03039.
  """
  return RealNVP((dims,), num_coupling_layers=num_layers,
                 hidden_units=hidden_units, coupling=coupling, step=step,
                 batch_norm_couplings=batch_norm_couplings,
                 num_classes=num_classes, context_size=context_size,
                 conditional_prior=conditional_prior, spline_bins=spline_bins,
                 spline_bound=spline_bound, recompute=recompute, dtype=dtype,
                 network_dtype=network_dtype, validate_args=validate_args)


@dataclasses.dataclass(frozen=True)
class FlowKind:
  """A kind of flow: how to build it on vectors and, if it can, on images.

  Each builder takes the event shape's size (`D`, vectors) or the event shape
  (`(H, W, C)`, images) and keyword settings; `*_settings` name the settings
  it accepts, so that one it would not use is refused rather than ignored.
  """
  vectors: Callable[..., tfd.Distribution]
  vector_settings: Tuple[str, ...]
  images: Optional[Callable[..., tfd.Distribution]] = None
  image_settings: Tuple[str, ...] = ()

  def settings(self, event_shape):
    """The settings this kind accepts for events of `event_shape`."""
    return self.image_settings if len(event_shape) == 3 else self.vector_settings


_CONDITIONAL_SETTINGS = ('num_classes', 'context_size', 'conditional_prior')
_COUPLING_VECTOR_SETTINGS = ('num_layers', 'hidden_units',
                             'batch_norm_couplings', 'recompute', 'dtype',
                             'network_dtype', 'validate_args'
                             ) + _CONDITIONAL_SETTINGS
_COUPLING_IMAGE_SETTINGS = ('num_scales', 'num_res_blocks', 'num_filters',
                            'batch_norm_couplings',
                            'double_filters_at_squeeze', 'conditioner_options',
                            'alpha', 'dequantization', 'recompute', 'dtype',
                            'network_dtype', 'validate_args'
                            ) + _CONDITIONAL_SETTINGS


_SPLINE_SETTINGS = ('spline_bins', 'spline_bound')


def _coupling_kind(vector_defaults=None, **choices):
  """RealNVP (no `choices`), NICE, NSF or Glow: `RealNVP(coupling=, step=)`;
  `vector_defaults` replace `coupling_flow`'s defaults for vectors."""
  spline = _SPLINE_SETTINGS if choices.get('coupling') == 'spline' else ()
  return FlowKind(
      vectors=functools.partial(coupling_flow, **choices,
                                **(vector_defaults or {})),
      vector_settings=_COUPLING_VECTOR_SETTINGS + spline,
      images=functools.partial(RealNVP, **choices),
      image_settings=_COUPLING_IMAGE_SETTINGS + spline)


# Every kind of flow, for images and vectors: `make_flow` builds them.
FLOWS = {
    'realnvp': _coupling_kind(),
    'nice': _coupling_kind(coupling='additive'),
    # 4 couplings of 64x64 MLPs on vectors: BENCHMARKS.md, "2-D: 8gaussians".
    'nsf': _coupling_kind(coupling='spline', vector_defaults=dict(
        num_layers=4, hidden_units=(64, 64))),
    'maf': FlowKind(masked_autoregressive_flow,
                    ('num_layers', 'hidden_units', 'dtype')),
    'iaf': FlowKind(
        functools.partial(masked_autoregressive_flow, inverse=True),
        ('num_layers', 'hidden_units', 'dtype')),
    'glow': _coupling_kind(step='glow'),
    'ffjord': FlowKind(ffjord_flow, ('hidden_units', 'dtype', 'rtol', 'atol')),
}


def make_flow(kind, event_shape=(2,), **settings):
  """A flow of the given kind over vectors `(D,)` or images `(H, W, C)`.

  `make_flow(kind, event_shape, **settings)` returns, for every kind, a
  `tfd.TransformedDistribution` of a standard Normal through a bijector, built
  by `tf_realnvp.flows.from_data_to_latent`: `log_prob`, `sample`,
  `trainable_variables`, checkpoints and the SavedModel export
  (`tf_realnvp.serving`) treat them all alike. Each kind lists the settings it
  takes (`FlowKind`); one it would ignore is refused.

  | kind      | flow                                  | data    | fast     |
  |-----------|---------------------------------------|---------|----------|
  | `realnvp` | affine couplings (Dinh et al. 2017)   | any     | both     |
  | `nice`    | additive couplings (Dinh et al. 2015) | any     | both     |
  | `nsf`     | spline couplings (Durkan et al. 2019) | any     | both     |
  | `glow`    | actnorm, 1x1 mixing, coupling (2018)  | any     | both     |
  | `maf`     | masked autoregressive (2017)          | vectors | density  |
  | `iaf`     | inverse autoregressive (2016)         | vectors | sampling |
  | `ffjord`  | continuous-time ODE (2019)            | vectors | neither  |

  Initial weights come from the global random state of TensorFlow and Keras:
  `keras.utils.set_random_seed(seed)` before `make_flow` makes a flow
  reproducible. The autoregressive and ODE networks are TFP's `tf_keras`
  layers; the couplings use this package's Keras 3 conditioners.

  Args:
    kind: one of `FLOWS`: 'realnvp', 'nice', 'nsf', 'maf', 'iaf', 'glow',
      'ffjord'; images take 'realnvp', 'nice', 'nsf' and 'glow'
      (`tf_realnvp.RealNVP`'s multi-scale architecture).
    event_shape: `(D,)` with `D >= 2`, or `(H, W, C)`.
    **settings: keyword arguments of the kind's builder, as listed by
      `FLOWS[kind].settings(event_shape)`: for vectors `num_layers`,
      `hidden_units`, `dtype`; for 'realnvp', 'nice', 'nsf' and 'glow' also
      `batch_norm_couplings`, `network_dtype`, `validate_args` and the
      conditional settings `num_classes`, `context_size`,
      `conditional_prior`; for 'nsf' also `spline_bins`, `spline_bound`; for
      'ffjord' `hidden_units`, `dtype`, `rtol`, `atol`; for images the
      arguments of `tf_realnvp.RealNVP` (`num_scales`, `num_res_blocks`,
      `num_filters`, `dequantization`, ...).

  Returns:
    A `tfd.TransformedDistribution` over a standard Normal with event shape
    `event_shape`.

  Raises:
    ValueError: for an unknown kind, an event shape the kind cannot model, or
      a setting it does not take.
  """
  if kind not in FLOWS:
    raise ValueError(f'kind must be one of {tuple(FLOWS)}, got {kind!r}.')
  event_shape = tuple(event_shape)
  flow_kind = FLOWS[kind]
  if len(event_shape) == 3 and flow_kind.images is not None:
    build = flow_kind.images
  elif len(event_shape) == 1 and event_shape[0] >= 2:
    build = lambda shape, **kwargs: flow_kind.vectors(int(shape[0]), **kwargs)
  else:
    images = ' or images (H, W, C)' if flow_kind.images else ''
    raise ValueError(
        f'{kind} builds flows of vectors, event_shape=(D,) with D >= 2'
        f'{images}; got {event_shape}.')
  unknown = sorted(set(settings) - set(flow_kind.settings(event_shape)))
  if unknown:
    raise ValueError(
        f'{kind} on events of shape {event_shape} does not take '
        f'{", ".join(unknown)}; it takes '
        f'{", ".join(flow_kind.settings(event_shape))}.')
  return build(event_shape, **settings)
