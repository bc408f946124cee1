"""Masked rational-quadratic spline coupling (Durkan et al., 2019, Sec. 3)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp.bijectors.coupling import Coupling

tfb = tfp.bijectors

# The defaults of the flows built of these layers: 8 bins on [-6, 6], which
# holds the 2-D toys (BENCHMARKS.md, "2-D: 8gaussians": on 8gaussians, whose
# points reach past 5, [-5, 5] ended 0.10 nats above the entropy, [-6, 6]
# 0.01 and [-8, 8] 0.01).
BINS = 8
BOUND = 6.


class SplineCoupling(Coupling):
  """Spline coupling `y = b*x + (1-b)*g(x; net(b*x))`, `g` a monotone spline.

  With a binary mask `b` (see `masks.py`), each transformed entry goes
  through its own monotone rational-quadratic spline `g` (Gregory & Delbourgo
  1982) on `[-B, B]`, the identity outside it, whose `K` bins and `K - 1`
  inner knot slopes come from the conditioner (Durkan et al. 2019, Sec.
  3.1-3.2). With the conditioner's raw outputs `(u^w, u^h, u^d)` per entry,

      widths  = m + (2B - K m) softmax(u^w)      heights likewise from u^h
      slopes  = m + softplus(u^d + c),           c = log(exp(1 - m) - 1)
      log|det dy/dx| = sum_i (1-b_i) log g_i'(x_i)

  with a minimum `m = 1e-3` for every width, height and slope, and slope 1
  at both ends, so `g` joins the identity tails smoothly. Zero raw outputs
  give equal bins and unit slopes: the identity, so a zero-initialized
  conditioner head starts the layer as the identity, as in `AffineCoupling`.

  Where an affine coupling moves and scales each conditional `p(x_i | b*x)`
  as a whole, a spline can also split one mode into several, which is why
  a few spline couplings fit multi-modal densities that many affine ones
  only approach. `g` and its log-derivative are TFP's
  `tfb.RationalQuadraticSpline`, inverted in closed form.

  The conditioner maps a batch `[N, *event_shape]` of masked events to a
  tuple `(raw,)` with `raw` of shape `[N, *event_shape, 3K - 1]` (see
  `Coupling` for batches, dtypes and a conditional coupling's context).

  #### References

  [1]: Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural
       Spline Flows. NeurIPS 2019. https://arxiv.org/abs/1906.04032
  [2]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  """

  MINIMUM = 1e-3

  def __init__(self, mask, conditioner, bins=BINS, bound=BOUND,
               context=None, validate_args=False, name='spline_coupling'):
    """Builds the coupling.

    Args:
      mask: array of 0/1 of the event's shape; 1 marks entries kept unchanged.
      conditioner: `b*x -> (raw,)`, `raw` of shape `[N, *event, 3 bins - 1]`,
        a Keras layer (built here on a batch of one) or a `tf.Module`.
      bins: number K of spline bins.
      bound: `B`, the spline acts on `[-B, B]` and is the identity outside.
      context: a `Context` for a conditional coupling, else `None`.
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
    """
    parameters = dict(locals())
    if int(bins) != bins or bins < 2:
      raise ValueError(f'bins must be an integer >= 2, got {bins}.')
    if not bound > bins * self.MINIMUM / 2:
      raise ValueError(f'bound must be positive and leave room for {bins} '
                       f'bins, got {bound}.')
    if getattr(conditioner, 'spline_bins', bins) != bins:
      raise ValueError(
          f'{name}: the conditioner was built with spline_bins='
          f'{conditioner.spline_bins}, the coupling has {bins} bins.')
    self._bins = int(bins)
    self._bound = float(bound)
    super().__init__(mask, conditioner, context, is_constant_jacobian=False,
                     validate_args=validate_args, parameters=parameters,
                     name=name)

  @property
  def bins(self):
    return self._bins

  @property
  def bound(self):
    return self._bound

  def _coupling_parameters(self, outputs):
    (raw,) = outputs
    if raw.shape[-1] != 3 * self._bins - 1:
      raise ValueError(
          f'{self.name}: a spline of {self._bins} bins needs '
          f'{3 * self._bins - 1} parameters per entry, the conditioner '
          f'returned {raw.shape[-1]}.')
    return [raw]

  @property
  def _coupling_parameter_shapes(self):
    return [(3 * self._bins - 1,)]

  def _spline(self, kept, dtype, conditional_input):
    """The spline of every entry, from the kept entries' conditioner."""
    (raw,) = self._conditioner_outputs(kept, dtype, conditional_input)
    k, m = self._bins, self.MINIMUM
    span = 2. * self._bound - k * m
    widths = m + span * tf.nn.softmax(raw[..., :k])
    heights = m + span * tf.nn.softmax(raw[..., k:2 * k])
    slopes = m + tf.nn.softplus(raw[..., 2 * k:] + np.log(np.expm1(1. - m)))
    return tfb.RationalQuadraticSpline(widths, heights, slopes,
                                       range_min=-self._bound)

  def _masked(self, kept, value, log_derivative):
    """`b*kept + (1-b)*value` and the log-det of the transformed entries."""
    transformed = 1. - tf.constant(self._mask, value.dtype)
    return (kept + transformed * value,
            self._sum_event(transformed * log_derivative))

  def _forward_and_log_det(self, x, conditional_input=None):
    self._check_event_shape(x)
    kept = x * tf.constant(self._mask, x.dtype)
    spline = self._spline(kept, x.dtype, conditional_input)
    return self._masked(kept, spline.forward(x),
                        spline.forward_log_det_jacobian(x, event_ndims=0))

  def _inverse_and_log_det(self, y, conditional_input=None):
    self._check_event_shape(y)
    kept = y * tf.constant(self._mask, y.dtype)
    spline = self._spline(kept, y.dtype, conditional_input)
    return self._masked(kept, spline.inverse(y),
                        spline.inverse_log_det_jacobian(y, event_ndims=0))
