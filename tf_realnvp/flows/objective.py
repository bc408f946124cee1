"""The training objective, and bits/dim, the unit of reported likelihoods."""

import math

import tensorflow as tf

from tf_realnvp.data import dequantize
from tf_realnvp.flows.flow import log_prob
from tf_realnvp.flows.flow import weight_scale_l2


def events_and_context(batch):
  """`(x, context)` of a batch: events `x`, or a pair `(x, labels)` for a
  conditional flow; the context is `None` for events alone."""
  if isinstance(batch, (tuple, list)):
    x, context = batch
    return x, context
  return batch, None


def loss(flow, x, l2, context=None):
  """The paper's objective on the batch `x`, and its mean NLL for reporting.

      loss = -mean_i log p(x_i) / D  +  l2 * sum_g g^2

  (`log p(x_i | c_i)` for a conditional flow and its `context`.)

  The negative log-likelihood is per dimension (`D`, the number of entries
  of an event), the scale of bits/dim, so one `l2` means the same penalty
  for 2-D points, MNIST and CIFAR-10; `g` runs over the weight-normalization
  gains of the s/t networks (`weight_scale_l2`), the "weight scale
  parameters" the paper penalises with coefficient 5e-5 (Dinh et al. 2017,
  Sec. 4.1). Flows without couplings (MAF, IAF, FFJORD) have no gains.

  Every loop that trains a flow (the trainer, the benchmarks, the comparison
  of flows, the README's example) minimises `loss`, and every bits/dim figure
  comes from `nats_to_bits_per_dim` (`bits_per_dim` for 8-bit images), so they
  cannot drift apart.

  Args:
    flow: a distribution with `log_prob`, e.g. `tf_realnvp.RealNVP`.
    x: a batch of events, `[batch, *flow.event_shape]`.
    l2: the penalty's coefficient.
    context: a conditional flow's context of the batch (e.g. labels
      `[batch]`), else `None`.

  Returns:
    `(loss, mean_nll)`: the scalar to minimise, and `-mean_i log p(x_i)` in
    nats per event (without the penalty), the figure training reports.
  """
  mean_nll = -tf.reduce_mean(log_prob(flow, x, context))
  dims = flow.event_shape.num_elements()
  return mean_nll / dims + l2 * weight_scale_l2(flow), mean_nll


def nats_to_bits_per_dim(nats, event_shape):
  """Negative log-likelihood in nats per event as bits per dimension,
  `nats / (D ln 2)` with `D` the number of entries of `event_shape`."""
  return nats / (math.prod(event_shape) * math.log(2.))


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
