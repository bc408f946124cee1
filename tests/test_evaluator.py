"""The evaluator's figures: one draw's bound and the importance-weighted one."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tf_realnvp
from tf_realnvp import evaluation

tfd = tfp.distributions


def test_importance_weighting_averages_the_likelihoods_of_the_draws():
  """With `K` datasets of the same images under other noise, each image's
  NLL is `-log mean_k p(x + u_k)`: at most the draws' mean NLL (Jensen), and
  one draw's NLL for `K = 1`."""
  # Any distribution of images: the figures are the evaluator's arithmetic.
  flow = tfd.Independent(tfd.Logistic(tf.fill((4, 4, 3), 128.), 2.), 3)
  images = np.random.RandomState(0).randint(0, 256, (6, 4, 4, 3), np.uint8)
  draws = [tf_realnvp.dequantize(images, tf.constant([k, 0])) for k in
           range(3)]
  batches = [tf.data.Dataset.from_tensor_slices(x).batch(4) for x in draws]
  evaluator = evaluation.Evaluator(flow, tf.distribute.get_strategy())
  log_probs = np.stack([flow.log_prob(x).numpy() for x in draws])
  np.testing.assert_allclose(evaluator.mean_nll(batches[0]),
                             -log_probs[0].mean(), rtol=1e-6)
  expected = -np.mean(np.logaddexp.reduce(log_probs, axis=0) - math.log(3))
  weighted = evaluator.mean_nll(*batches)
  np.testing.assert_allclose(weighted, expected, rtol=1e-6)
  assert weighted < -log_probs.mean() - 1e-3
