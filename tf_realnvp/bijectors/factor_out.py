"""Multi-scale factor-out (Dinh et al., 2017, Sec. 3.6, eq. 13-14)."""

import tensorflow as tf

from tf_realnvp.bijectors.context import takes_context
from tf_realnvp.bijectors.one_pass import OnePassBijector


class FactorOut(OnePassBijector):
  """Passes half the channels straight to the latent, transforms the rest.

  Splitting the last axis into halves `(x1, x2)`:

      forward:  y = concat(x1, g(x2))
      inverse:  x = concat(y1, g^{-1}(y2))
      log|det dy/dx| = log|det dg/dx2|

  This is the recursion of the multi-scale architecture, `(z_i, h_i) =
  f_i(h_{i-1})` (Dinh et al. eq. 13-14; blog eq. 17): `x1` is a factored-out
  latent `z_i` that goes straight to the Gaussian prior, and `g` is the rest
  of the flow, applied to `h_i = x2` only. `g` must keep its event's shape,
  so the whole flow maps `[H, W, C]` to a latent of the same shape.

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  """

  def __init__(self, bijector, validate_args=False, name='factor_out'):
    parameters = dict(locals())
    self._bijector = bijector
    with tf.name_scope(name) as name:
      super().__init__(
          forward_min_event_ndims=max(1, bijector.forward_min_event_ndims),
          validate_args=validate_args,
          parameters=parameters,
          name=name)

  @property
  def bijector(self):
    return self._bijector

  @property
  def conditional(self):
    """Whether the inner flow reads `conditional_input`."""
    return takes_context(self._bijector)

  def _split(self, x):
    channels = x.shape[-1]
    if channels is not None and channels % 2:
      raise ValueError(
          f'{self.name}: needs an even size on the last axis, got {channels}.')
    return tf.split(x, 2, axis=-1)

  def _forward_and_log_det(self, x, **context):
    return self._transform_rest(x, self._bijector.forward,
                                self._bijector.forward_log_det_jacobian,
                                context)

  def _inverse_and_log_det(self, y, **context):
    return self._transform_rest(y, self._bijector.inverse,
                                self._bijector.inverse_log_det_jacobian,
                                context)

  def _transform_rest(self, value, transform, log_det_jacobian, context):
    """Applies one direction of the inner bijector to the second half.

    `context` is `{}` or the `conditional_input` of a conditional inner flow.
    """
    kept, rest = self._split(value)
    # Hold the inner output until its log-det is read: TFP's cache drops an
    # entry (and the log-det computed with it) once the output is collected.
    rest_out = transform(rest, **context)
    log_det = log_det_jacobian(rest, event_ndims=self.forward_min_event_ndims,
                               **context)
    if context:  # A context may broadcast the batch; the kept half follows.
      kept = tf.broadcast_to(kept, tf.concat(
          [tf.shape(rest_out)[:-1], tf.shape(kept)[-1:]], axis=0))
    return tf.concat([kept, rest_out], axis=-1), log_det
