"""Masked affine coupling layer (Dinh et al., 2017, eq. 6-9 and 12)."""

import tensorflow as tf

from tf_realnvp.bijectors.coupling import Coupling


class AffineCoupling(Coupling):
  """Affine coupling `y = b*x + (1-b)*(x*exp(s(b*x)) + t(b*x))`.

  With a binary mask `b` (see `masks.py`) and a conditioner `(t, s) = net(b*x)`:

      forward:  y = b*x + (1-b) * (x * exp(s) + t)
      inverse:  x = b*y + (1-b) * (y - t) * exp(-s)       (b*x == b*y)
      log|det dy/dx| = sum_i (1-b_i) s_i

  The Jacobian is triangular once the variables are ordered with the kept ones
  first, so the log-det is the sum of the log-scales of the transformed entries
  (Dinh et al. 2017, eq. 6). A conditioner that returns `s = None` makes the
  layer additive (NICE, Dinh et al. 2015): `y = x + (1-b) t`, log-det 0.

  The coupling knows nothing about networks: `conditioner` is a Keras layer
  or a `tf.Module` mapping a batch `[N, *event_shape]` of masked events to
  `(shift, log_scale)`, each of that shape (see `Coupling` for batches,
  dtypes and a conditional coupling's context).

  #### Examples

  ```python
  mask = masks.checkerboard_mask(8, 8, 3, parity=0)
  layer = AffineCoupling(mask, networks.ResNetConditioner(channels=3))
  z = layer.forward(x)   # x: [..., 8, 8, 3]
  ```

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  [2]: Laurent Dinh, David Krueger, Yoshua Bengio. NICE: Non-linear Independent
       Components Estimation. ICLR 2015 workshop. https://arxiv.org/abs/1410.8516
  """

  def __init__(self, mask, conditioner, additive=False, context=None,
               recompute_network=False, validate_args=False,
               name='affine_coupling'):
    """Builds the coupling.

    Args:
      mask: array of 0/1 of the event's shape; 1 marks entries kept unchanged.
      conditioner: `b*x -> (shift, log_scale)`, a Keras layer (built here on
        a batch of one so its variables exist and are tracked) or a
        `tf.Module` (whose `tf.Variable`s TF tracks).
      additive: whether the conditioner returns `log_scale=None` (NICE).
      context: a `Context` for a conditional coupling, else `None`.
      recompute_network: whether the backward pass runs the conditioner
        again instead of keeping its activations (`tf_realnvp.recompute`).
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
    """
    parameters = dict(locals())
    self._additive = additive
    super().__init__(mask, conditioner, context,
                     is_constant_jacobian=additive,
                     recompute_network=recompute_network,
                     validate_args=validate_args, parameters=parameters,
                     name=name)

  @property
  def additive(self):
    return self._additive

  def _coupling_parameters(self, outputs):
    shift, log_scale = outputs
    if self._additive and log_scale is not None:
      raise ValueError('An additive coupling needs a conditioner that '
                       'returns log_scale=None.')
    return [shift] + ([] if self._additive else [log_scale])

  @property
  def _coupling_parameter_shapes(self):
    return [()] * (1 if self._additive else 2)

  def _shift_and_log_scale(self, kept, dtype, conditional_input=None):
    """`(t, s)` of the kept entries, zero where `b = 1` (`s`: None if
    additive)."""
    transformed = 1. - tf.constant(self._mask, dtype)
    outputs = [output * transformed for output in self._conditioner_outputs(
        kept, dtype, conditional_input)]
    return outputs[0], None if self._additive else outputs[1]

  def _log_det(self, log_scale, like):
    if log_scale is None:
      return tf.zeros(tf.shape(like)[:-self._event_shape.rank], like.dtype)
    return self._sum_event(log_scale)

  def _forward_and_log_det(self, x, conditional_input=None):
    self._check_event_shape(x)
    shift, log_scale = self._shift_and_log_scale(
        x * tf.constant(self._mask, x.dtype), x.dtype, conditional_input)
    y = x + shift if log_scale is None else x * tf.exp(log_scale) + shift
    return y, self._log_det(log_scale, x)

  def _inverse_and_log_det(self, y, conditional_input=None):
    self._check_event_shape(y)
    shift, log_scale = self._shift_and_log_scale(
        y * tf.constant(self._mask, y.dtype), y.dtype, conditional_input)
    x = y - shift if log_scale is None else (y - shift) * tf.exp(-log_scale)
    return x, -self._log_det(log_scale, y)
