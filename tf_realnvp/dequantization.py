"""Uniform dequantization of 8-bit images (Theis et al., 2016; Dinh et al., 2017)."""

import tensorflow as tf
import tensorflow_probability as tfp


def dequantize(images, seed):
  """Returns `images + u`, `u ~ U[0, 1)^D`: continuous intensities in `[0, 256)`.

  A density `p` on `[0, 256)^D` fitted to dequantized data bounds the discrete
  model, `-log P(k) <= E_u[-log p(k + u)]` (Theis et al. 2016, eq. 8), which is
  why bits/dim of dequantized data is what papers report.

  Args:
    images: `uint8` tensor of pixel values.
    seed: a seed for `tfp.random.sanitize_seed` (an int or a shape-[2] tensor).

  Raises:
    TypeError: if `images` is not `uint8`.
  """
  images = tf.convert_to_tensor(images)
  if images.dtype != tf.uint8:
    raise TypeError(
        f'Expected uint8 pixel values in [0, 255], got dtype {images.dtype.name}. '
        'Pass the raw 8-bit images; the noise is added here.')
  noise = tf.random.stateless_uniform(
      tf.shape(images), seed=tfp.random.sanitize_seed(seed))
  return tf.cast(images, tf.float32) + noise
