"""The evaluator's figures: one draw's bound and the importance-weighted one."""

import math

import numpy as np
import tensorflow as tf

import bijector_checks
import tf_realnvp
from tf_realnvp import evaluation


def test_importance_weighting_averages_the_likelihoods_of_the_draws():
  """With `K` datasets of the same images under other noise, each image's
  NLL is `-log mean_k p(x + u_k)`: at most the draws' mean NLL (Jensen), and
  one draw's NLL for `K = 1`."""
  flow = bijector_checks.perturb(tf_realnvp.RealNVP(
      (4, 4, 3), num_scales=1, num_res_blocks=1, num_filters=4,
      dequantization='variational'), scale=0.1)
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
