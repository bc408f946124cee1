"""A learned Gaussian prior per context (Glow's class-conditional prior)."""

import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import prefer_static as ps

from tf_realnvp.bijectors.one_pass import OnePassBijector
from tf_realnvp.bijectors.own_variables import OwnVariables


class ConditionalPrior(OwnVariables, OnePassBijector):
  """Standardizes by a mean and scale that depend on the context `c`:

      forward:  z = (h - mu(c)) * exp(-log_sigma(c))
      inverse:  h = mu(c) + exp(log_sigma(c)) * z
      log|det dz/dh| = -sum_i log_sigma_i(c)
      (mu(c), log_sigma(c)) = W features(c) + b,   W = 0, b = 0 at the start

  Last in a flow's data-to-latent map, over the standard Normal base, it
  makes the prior of `h` the Normal `N(mu(c), diag(exp(2 log_sigma(c))))`:
  for class labels (features: the one-hot vector), a learned mean and
  log-scale per class and dimension, Glow's class-conditional prior
  (Kingma & Dhariwal 2018, the `ycond` option of their code); for context
  vectors, a mean and log-scale linear in the vector. It starts as the
  identity.

  #### References

  [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with
       Invertible 1x1 Convolutions. NeurIPS 2018.
       https://arxiv.org/abs/1807.03039
  """

  def __init__(self, event_shape, context, dtype=tf.float32,
               validate_args=False, name='conditional_prior', variables=None):
    """Builds the prior.

    Args:
      event_shape: shape of the latent event.
      context: the `Context` the prior depends on.
      dtype: float dtype of the latent.
      validate_args: whether to check the context's labels at run time.
      name: name of the bijector.
      variables: `{'kernel', 'bias'}` of the bijector this one copies (what
        `copy()` passes); `None` creates new ones.
    """
    parameters = dict(locals())
    self._event_shape = tf.TensorShape(event_shape)
    self._context = context
    size = int(np.prod(event_shape))
    with tf.name_scope(name) as name:
      variables = self._own_variables(parameters, lambda: dict(
          kernel=tf.Variable(tf.zeros([context.features, 2 * size], dtype),
                             name='kernel'),
          bias=tf.Variable(tf.zeros([2 * size], dtype), name='bias')))
      self.kernel = variables['kernel']
      self.bias = variables['bias']
      super().__init__(
          forward_min_event_ndims=self._event_shape.rank,
          validate_args=validate_args, parameters=parameters, dtype=dtype,
          name=name)

  @property
  def context(self):
    """The `Context` the layer reads, or `None`."""
    return self._context

  @property
  def conditional(self):
    return True

  def _mean_and_log_scale(self, value, conditional_input):
    """`mu(c)`, `log_sigma(c)` of `value`'s and the context's joint batch."""
    event = self._event_shape.as_list()
    batch_shape, features = self._context.batch_and_features(
        value, len(event), conditional_input, self.validate_args)
    mean, log_scale = tf.split(
        tf.matmul(features, self.kernel) + self.bias, 2, axis=-1)
    shape = ps.concat([batch_shape, event], axis=0)
    return tf.reshape(mean, shape), tf.reshape(log_scale, shape)

  def _log_det(self, log_scale):
    return -tf.reduce_sum(
        log_scale, axis=list(range(-self._event_shape.rank, 0)))

  def _forward_and_log_det(self, h, conditional_input=None):
    mean, log_scale = self._mean_and_log_scale(h, conditional_input)
    return (h - mean) * tf.exp(-log_scale), self._log_det(log_scale)

  def _inverse_and_log_det(self, z, conditional_input=None):
    mean, log_scale = self._mean_and_log_scale(z, conditional_input)
    return mean + tf.exp(log_scale) * z, -self._log_det(log_scale)
