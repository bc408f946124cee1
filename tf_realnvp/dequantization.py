"""Uniform dequantization of 8-bit images (Theis et al., 2016; Dinh et al., 2017)."""

import tensorflow as tf


def dequantize(images, seed):
  """Returns `images + u`, `u ~ U[0, 1)^D`: continuous intensities in `[0, 256)`.

  A density `p` on `[0, 256)^D` fitted to dequantized data bounds the discrete
  model, `-log P(k) <= E_u[-log p(k + u)]` (Theis et al. 2016, eq. 8), which is
  why bits/dim of dequantized data is what papers report.

  Args:
    images: `uint8` tensor of pixel values.
    seed: an int, or a shape-[2] int tensor of a stateless seed; the noise is
      a function of the seed alone (not of TensorFlow's global seed).

  Raises:
    TypeError: if `images` is not `uint8`.
  """
  images = tf.convert_to_tensor(images)
  if images.dtype != tf.uint8:
    raise TypeError(
        f'Expected uint8 pixel values in [0, 255], got dtype {images.dtype.name}. '
        'Pass the raw 8-bit images; the noise is added here.')
  if isinstance(seed, int):
    seed = tf.constant([0, seed], tf.int32)
  noise = tf.random.stateless_uniform(tf.shape(images), seed=seed)
  pixels = tf.cast(images, tf.float32)
  # In float32, k + u rounds up to k + 1 for u within 2**-17 of 1 (k >= 128);
  # keep every value in [k, k + 1).
  return tf.minimum(pixels + noise, tf.math.nextafter(pixels + 1., pixels))
