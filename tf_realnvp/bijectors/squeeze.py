"""Squeeze: trade spatial resolution for channels (Dinh et al., 2017, Sec. 3.6)."""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import prefer_static as ps


class Squeeze(tfp.bijectors.Bijector):
  """Reshapes `[H, W, C]` events to `[H/2, W/2, 4C]`, a pure permutation.

  Each channel's 2x2 sub-square becomes four consecutive channels, in the order
  of Figure 3 of the paper (top-left, top-right, bottom-left, bottom-right):

      y[i, j, 4c + 2a + b] = x[2i + a, 2j + b, c],   a, b in {0, 1}

  The inverse ("unsqueeze") undoes it; `tfp.bijectors.Invert(Squeeze())` is the
  unsqueeze bijector. A permutation has |det| = 1, so the log-det is 0.

  #### References

  [1]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation
       using Real NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
  """

  def __init__(self, validate_args=False, name='squeeze'):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      super().__init__(
          forward_min_event_ndims=3,
          is_constant_jacobian=True,
          validate_args=validate_args,
          parameters=parameters,
          name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  def _forward(self, x):
    self._check_even(x.shape[-3:-1])
    shape = ps.shape(x)
    batch, height, width, channels = shape[:-3], shape[-3], shape[-2], shape[-1]
    x = tf.reshape(x, ps.concat(
        [batch, [height // 2, 2, width // 2, 2, channels]], axis=0))
    x = _transpose_event(x, [0, 2, 4, 1, 3])  # [H/2, W/2, C, 2, 2]
    return tf.reshape(x, ps.concat(
        [batch, [height // 2, width // 2, 4 * channels]], axis=0))

  def _inverse(self, y):
    self._check_multiple_of_four(y.shape[-1])
    shape = ps.shape(y)
    batch, height, width, channels = shape[:-3], shape[-3], shape[-2], shape[-1]
    y = tf.reshape(y, ps.concat(
        [batch, [height, width, channels // 4, 2, 2]], axis=0))
    y = _transpose_event(y, [0, 3, 1, 4, 2])  # [H, 2, W, 2, C/4]
    return tf.reshape(y, ps.concat(
        [batch, [2 * height, 2 * width, channels // 4]], axis=0))

  def _forward_log_det_jacobian(self, x):
    return tf.zeros([], x.dtype)

  def _check_even(self, spatial):
    for size in spatial:
      if size is not None and size % 2:
        raise ValueError(
            f'{self.name}: height and width must be even, got {spatial}.')

  def _check_multiple_of_four(self, channels):
    if channels is not None and channels % 4:
      raise ValueError(
          f'{self.name}: unsqueeze needs a multiple of 4 channels, got '
          f'{channels}.')

  def _forward_event_shape(self, input_shape):
    if input_shape.rank is None:
      return input_shape
    self._check_even(input_shape[-3:-1])
    height, width, channels = input_shape[-3:]
    return input_shape[:-3].concatenate([
        None if height is None else height // 2,
        None if width is None else width // 2,
        None if channels is None else 4 * channels])

  def _forward_event_shape_tensor(self, input_shape):
    height, width, channels = input_shape[-3], input_shape[-2], input_shape[-1]
    return ps.concat(
        [input_shape[:-3], [height // 2, width // 2, 4 * channels]], axis=0)

  def _inverse_event_shape(self, output_shape):
    if output_shape.rank is None:
      return output_shape
    height, width, channels = output_shape[-3:]
    self._check_multiple_of_four(channels)
    return output_shape[:-3].concatenate([
        None if height is None else 2 * height,
        None if width is None else 2 * width,
        None if channels is None else channels // 4])

  def _inverse_event_shape_tensor(self, output_shape):
    height, width, channels = (
        output_shape[-3], output_shape[-2], output_shape[-1])
    return ps.concat(
        [output_shape[:-3], [2 * height, 2 * width, channels // 4]], axis=0)


def _transpose_event(x, event_perm):
  """Transposes the rightmost `len(event_perm)` axes, leaving batch axes alone."""
  batch_ndims = ps.rank(x) - len(event_perm)
  perm = ps.concat([ps.range(batch_ndims),
                    batch_ndims + ps.constant(event_perm)], axis=0)
  return tf.transpose(x, perm)
