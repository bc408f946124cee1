"""Invertible 1x1 convolution of Glow (Kingma & Dhariwal, 2018, Sec. 3.2)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import training_mode
from tf_realnvp.bijectors.own_variables import OwnVariables


class InvertibleConv1x1(OwnVariables, tfp.bijectors.Bijector):
  """Learned channel mixing `z = W x` at every position, `W` in LU form.

  The bijector acts on the last axis (the channels of an image `[H, W, C]`,
  the entries of a vector `[D]`, where it is an invertible dense layer) and
  broadcasts over the others, which for images is a 1x1 convolution:

      forward:  z = W x                      (per position)
      inverse:  x = W^{-1} z                 (two triangular solves; traced
                                              in `training_mode.frozen()`,
                                              a product with W^{-1})
      log|det dz/dx| = sum_c log|s_c|        per position

  so with `event_ndims=3` TFP's reduction over the event gives
  `H * W * sum_c log|s_c|`. The weight is parameterized as in Glow's LU
  variant,

      W = P L (U + diag(sign(s) * exp(log|s|))),

  `P` a fixed permutation, `L` lower triangular with unit diagonal, `U`
  strictly upper triangular, `sign(s)` fixed: its log-det costs `O(C)` and
  `W` stays invertible. The trainable variable `lower_upper` packs the three
  trained factors into one `[C, C]` matrix (`L` below the diagonal, `U` above
  it, `log|s|` on it), so the layer has exactly `C^2` weights. The matrix
  product and solves are `tfp.bijectors.ScaleMatvecLU`'s, fed through a
  `tfp.util.DeferredTensor` that puts `sign(s) * exp(log|s|)` on the diagonal.

  `W` starts as a random orthogonal matrix (QR of a Gaussian matrix), whose
  LU factors give the initial `P`, `L`, `U`, `s`. `P` and `sign(s)` are
  non-trainable variables, so a checkpoint restores them too.

  #### Examples

  ```python
  mixing = InvertibleConv1x1(channels=12)
  z = mixing.forward(x)   # x: [batch, 16, 16, 12]
  ```

  #### References

  [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with
       Invertible 1x1 Convolutions. NeurIPS 2018.
       https://arxiv.org/abs/1807.03039
  """

  def __init__(self, channels, seed=None, dtype=tf.float32,
               validate_args=False, name='invertible_conv1x1', variables=None):
    """Builds the layer from a random orthogonal matrix.

    Args:
      channels: size of the last axis of the events.
      seed: NumPy seed of the initial orthogonal matrix; `None` draws it
        from NumPy's global random state (which
        `keras.utils.set_random_seed` seeds).
      dtype: float dtype of the weights and of the inputs.
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
      variables: `{'lower_upper', 'sign', 'permutation'}` of the bijector
        this one copies (what `copy()` passes); `None` creates new ones.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as scope:
      variables = self._own_variables(
          parameters, lambda: _orthogonal_lu(channels, seed, dtype))
      self._lower_upper = variables['lower_upper']
      self._sign = variables['sign']
      self._permutation = variables['permutation']
      self._matvec_lu = tfp.bijectors.ScaleMatvecLU(
          tfp.util.DeferredTensor(self._lower_upper, self._with_signed_scale),
          self._permutation, validate_args=validate_args)
      super().__init__(
          forward_min_event_ndims=1,
          is_constant_jacobian=True,
          dtype=dtype,
          validate_args=validate_args,
          parameters=parameters,
          name=scope)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  def weight(self):
    """The current `[C, C]` matrix `W`."""
    return tfp.math.lu_reconstruct(
        self._with_signed_scale(self._lower_upper), self._permutation)

  def _with_signed_scale(self, lower_upper):
    """`lower_upper` with `sign(s) * exp(log|s|)` in place of its diagonal."""
    return tf.linalg.set_diag(
        lower_upper, self._sign * tf.exp(tf.linalg.diag_part(lower_upper)))

  def _log_abs_det(self):
    return tf.reduce_sum(tf.linalg.diag_part(self._lower_upper))

  def _forward(self, x):
    return self._matvec_lu.forward(x)

  def _inverse(self, y):
    if training_mode.is_frozen():
      # W^{-1} now, as a constant: formats without a triangular solve.
      with tf.init_scope():
        inverse = tf.constant(np.linalg.inv(self.weight().numpy()), self.dtype)
      return tf.linalg.matvec(inverse, y)
    return self._matvec_lu.inverse(y)

  def _forward_log_det_jacobian(self, x):
    return self._log_abs_det()

  def _inverse_log_det_jacobian(self, y):
    return -self._log_abs_det()


def _orthogonal_lu(channels, seed, dtype):
  """The variables of a random orthogonal `W`'s factors (class docstring)."""
  rng = np.random if seed is None else np.random.default_rng(seed)
  orthogonal, _ = np.linalg.qr(rng.standard_normal((channels, channels)))
  lower_upper, permutation = tf.linalg.lu(tf.constant(orthogonal, dtype))
  diagonal = tf.linalg.diag_part(lower_upper)
  return dict(
      lower_upper=tf.Variable(
          tf.linalg.set_diag(lower_upper, tf.math.log(tf.abs(diagonal))),
          name='lower_upper'),
      sign=tf.Variable(tf.sign(diagonal), trainable=False,
                       name='diagonal_sign'),
      permutation=tf.Variable(permutation, trainable=False,
                              name='permutation'))
