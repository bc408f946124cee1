"""The training objective, and the unit a density model's likelihood is reported in.

Every loop that trains a flow (the trainer, the benchmarks, the comparison
of flows, the README's example) minimises `loss`, and every bits/dim figure
comes from `nats_to_bits_per_dim`, so they cannot drift apart.
"""

import math

import tensorflow as tf

from tf_realnvp.distribution import log_prob
from tf_realnvp.distribution import weight_scale_l2


def split(batch):
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
