"""Variational dequantization as a bijector (Ho et al., 2019, Sec. 3.1)."""

import numpy as np
import tensorflow as tf

from tf_realnvp.bijectors.one_pass import OnePassBijector

# The noise `w` is kept in `[EDGE, 1 - EDGE]` before its logit, so that a
# draw of exactly 0 (which float32 pixels `x + w` produce) stays finite.
EDGE = 1e-6


class VariationalDequantization(OnePassBijector):
  """A learned map of each unit cell `[k, k+1)^D` of pixel space onto itself.

  Uniform dequantization trains a flow `p` on `v = x + w`, `w ~ U[0, 1)^D`,
  for 8-bit images `x`. Flow++ learns the noise instead: `u ~ q(u | x)`, a
  conditional flow, and maximizes the variational bound on the discrete
  likelihood `P(x) = integral over [0, 1)^D of p(x + u) du`:

      log P(x) >= E_{u ~ q(. | x)} [log p(x + u) - log q(u | x)]

  (Ho et al. 2019, eq. 12). This bijector is that `q` written as a map of
  the uniform noise: with `x = floor(v)` and `w = v - x`,

      forward:  y = x + u,    u = sigmoid(g(logit(w); x))
      inverse:  v = x + w,    w = sigmoid(g^{-1}(logit(u); x))
      log|det dy/dv| = log|du/dw| = -log q(u | x)

  where `g` (`noise_map`) is a flow of the noise conditioned on the image:
  a bijector of `[e, x / 128 - 1]` (the noise's logit and the image scaled
  to `[-1, 1)`, concatenated on the channels) that leaves the image
  channels unchanged, such as couplings whose masks keep them. The noise's
  base distribution is `logit(U(0, 1))`, a standard logistic: the
  "sigmoid-squashed" variable of Flow++, with a logistic where Flow++ has a
  Gaussian, so that the data stream's uniform noise drives it unchanged.
  So a flow `p` that applies this bijector first has, at a uniformly
  dequantized image `v`,

      log p_flow(v) = log p(y) - log q(u | x),

  a one-sample estimate of the bound above: the same objective and
  bits/dim as uniform dequantization, with a learned noise. The map keeps
  every cell, so the flow's discrete likelihood `P(x)` is that of `p`, and
  so are the discrete images its samples fall in. A `g` that starts as the
  identity (couplings with zero-initialized heads) makes this bijector
  start as the identity: uniform dequantization exactly.

  `w` is clipped to `[EDGE, 1 - EDGE]` before its logit, and `y` stays
  below `x + 1`, which float32 would otherwise round onto for `u` near 1;
  both change the map only on a set of probability below `2 EDGE` per
  entry.

  #### Examples

  ```python
  layer = VariationalDequantization(noise_couplings((32, 32, 3)))
  y = layer.forward(images + noise)   # noise ~ U[0, 1): y = images + u
  ```

  #### References

  [1]: Jonathan Ho, Xi Chen, Aravind Srinivas, Yan Duan, Pieter Abbeel.
       Flow++: Improving Flow-Based Generative Models with Variational
       Dequantization and Architecture Design. ICML 2019.
       https://arxiv.org/abs/1902.00275
  """

  def __init__(self, noise_map, validate_args=False,
               name='variational_dequantization'):
    """Builds the bijector.

    Args:
      noise_map: the bijector `g`, on `[..., H, W, 2C]`: the noise's logit
        in the first `C` channels, which it maps, and the image in the last
        `C`, which it must pass unchanged (couplings whose masks keep them),
        e.g. `tf_realnvp.flows.realnvp.noise_couplings(event_shape)`.
        Starting as the identity makes the bijector start as uniform
        dequantization.
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
    """
    parameters = dict(locals())
    self._noise_map = noise_map
    with tf.name_scope(name) as scope:
      super().__init__(forward_min_event_ndims=3, dtype=noise_map.dtype,
                       validate_args=validate_args, parameters=parameters,
                       name=scope)

  @property
  def noise_map(self):
    """The bijector `g` of the noise, conditioned on the image."""
    return self._noise_map

  def _moved_noise(self, v, direction):
    """`(x, g(e))` or `(x, g^{-1}(e))` and its log-det, with `x = floor(v)`
    and `e = logit(clip(v - x))`, the noise in logistic space."""
    x = tf.floor(v)
    e = tf.math.log(tf.clip_by_value(v - x, EDGE, 1. - EDGE))
    e -= tf.math.log1p(-tf.exp(e))
    both = tf.concat([e, x / 128. - 1.], axis=-1)
    moved = getattr(self._noise_map, direction)(both)
    log_det = getattr(self._noise_map, f'{direction}_log_det_jacobian')(
        both, event_ndims=3)
    return x, e, moved[..., :v.shape[-1]], log_det

  def _cell(self, x, e):
    """`x + sigmoid(e)`, kept below `x + 1` (for `x >= 0`: `(x + 1)(1 - eps)`
    rounds to one of the two floats below `x + 1`; TFLite has no
    `nextafter`)."""
    eps = np.finfo(x.dtype.as_numpy_dtype).eps
    return tf.minimum(x + tf.sigmoid(e), (x + 1.) * (1. - eps))

  def _forward_and_log_det(self, v):
    return self._within_cells(v, 'forward')

  def _inverse_and_log_det(self, y):
    return self._within_cells(y, 'inverse')

  def _within_cells(self, v, direction):
    """The map of `direction` (the inverse is the same formula through
    `g^{-1}`) and its log-det."""
    self._check_images(v)
    x, e, moved, log_det = self._moved_noise(v, direction)
    return self._cell(x, moved), log_det + self._sum_event(
        _log_sigmoid_slope(moved) - _log_sigmoid_slope(e))

  def _check_images(self, v):
    if v.shape.rank is None or v.shape.rank < 3 or v.shape[-1] is None:
      raise ValueError(
          f'{self.name}: expected images [..., H, W, C] with a known number '
          f'of channels, got shape {v.shape}.')

  def _sum_event(self, values):
    return tf.reduce_sum(values, axis=[-3, -2, -1])


def _log_sigmoid_slope(e):
  """`log sigmoid'(e) = -softplus(e) - softplus(-e)`."""
  return -tf.nn.softplus(e) - tf.nn.softplus(-e)
