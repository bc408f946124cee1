"""Bits per dimension, the likelihood figure image density models report."""

import tensorflow as tf

from tf_realnvp.data import dequantize
from tf_realnvp.objective import nats_to_bits_per_dim


def bits_per_dim(flow, images, seed):
  """Per-image bits/dim of 8-bit `images` under `flow`, one dequantization draw.

      bits/dim = -log p(x + u) / (D ln 2),   u ~ U[0, 1)^D

  where `p` is `flow`'s density over pixel intensities in `[0, 256)^D` and
  `D` the number of dimensions of an image. A density uniform on `[0, 256)^D`
  gives exactly 8. Average over images (and over several seeds, to reduce the
  dequantization noise) for a dataset's figure.

  Args:
    flow: a distribution over `[0, 256)^D` such as `RealNVP((H, W, C))`.
    images: `uint8` tensor `[..., H, W, C]` matching `flow.event_shape`.
    seed: seed of the dequantization noise.

  Returns:
    Float tensor of the batch shape of `images`.

  Raises:
    TypeError: if `images` is not `uint8`.
    ValueError: if the images' shape does not end in `flow.event_shape`.
  """
  images = tf.convert_to_tensor(images)
  event_shape = flow.event_shape
  ndims = event_shape.rank
  if (images.shape.rank is not None and
      (images.shape.rank < ndims or
       not event_shape.is_compatible_with(images.shape[-ndims:]))):
    raise ValueError(f'Images of shape {images.shape} do not end in the '
                     f"flow's event shape {event_shape}.")
  x = tf.cast(dequantize(images, seed), flow.dtype)
  return nats_to_bits_per_dim(-flow.log_prob(x), event_shape)
