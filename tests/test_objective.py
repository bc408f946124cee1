"""The training objective and bits/dim (on analytic densities, with uniform
dequantization), and that every training loop uses them."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from benchmarks import models
import tf_realnvp
from tf_realnvp import training
from tf_realnvp.flows import objective
from tf_realnvp.training import optimizers

tfd = tfp.distributions


def test_loss_of_an_identity_flow_is_the_normal_nll_per_dim_plus_the_penalty():
  """A new RealNVP is the identity (zero heads): its density is N(0, I), and
  every weight-norm gain starts at 1, so the penalty is l2 times their count."""
  flow = tf_realnvp.RealNVP((3,), num_coupling_layers=2, hidden_units=(4, 5),
                            dtype=tf.float64)
  x = np.random.RandomState(0).normal(size=(7, 3))
  gains = sum(g.shape.num_elements()
              for coupling in tf_realnvp.couplings(flow)
              for g in coupling.conditioner.scale_weights)
  assert gains == 2 * (4 + 5)
  nll = np.mean(0.5 * np.sum(x ** 2, axis=1) + 1.5 * np.log(2 * np.pi))
  loss, mean_nll = objective.loss(flow, tf.constant(x), l2=1e-2)
  np.testing.assert_allclose(mean_nll, nll, rtol=1e-12)
  np.testing.assert_allclose(loss, nll / 3 + 1e-2 * gains, rtol=1e-12)


def test_nats_to_bits_per_dim():
  """A uniform density on [0, 256)^D costs D ln 256 nats: 8 bits/dim."""
  shape = (4, 4, 3)
  nats = math.prod(shape) * math.log(256.)
  assert objective.nats_to_bits_per_dim(nats, shape) == pytest.approx(8.)


@pytest.fixture
def loss_calls(monkeypatch):
  """Records every call of `objective.loss`."""
  calls = []
  loss = objective.loss

  def recording(*args, **kwargs):
    calls.append(args[0])
    return loss(*args, **kwargs)
  monkeypatch.setattr(objective, 'loss', recording)
  return calls


def test_the_trainer_and_the_benchmarks_train_on_the_one_objective(
    loss_calls):
  """The trainer's step (which compare_flows and quality drive too) and the
  speed benchmark's step both call `objective.loss`."""
  strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
  with strategy.scope():
    flow = tf_realnvp.RealNVP((2,), num_coupling_layers=2, hidden_units=(4,))
    optimizer = optimizers.make_optimizer(1e-3)
    optimizer.build(flow.trainable_variables)
    steps = training.TrainStep(flow, optimizer, strategy, 8, l2=5e-5,
                          clip_norm=100., jit=False)
  steps(iter(tf.data.Dataset.from_tensors(tf.ones([8, 2]))))
  assert loss_calls == [flow]

  image_flow = models.realnvp((4, 4, 3), 'tiny', 'float32')
  models.make_train_step(image_flow, optimizers.make_optimizer(1e-3))(
      tf.fill([2, 4, 4, 3], 128.))
  assert loss_calls[-1] is image_flow.distribution


def uint8_images(shape, seed=0):
  return tf.constant(np.random.RandomState(seed).randint(0, 256, shape),
                     tf.uint8)


def test_uniform_density_on_the_pixel_cube_gives_eight_bits():
  """p = 256^-D on [0, 256)^D: -log p / (D ln 2) = 8 exactly."""
  uniform = tfd.Sample(tfd.Uniform(0., 256.), (4, 4, 3))
  bits = tf_realnvp.bits_per_dim(uniform, uint8_images((5, 4, 4, 3)), seed=0)
  assert bits.shape == (5,)
  np.testing.assert_allclose(bits, 8., rtol=1e-6)


def test_identity_initialised_flow_is_a_normal_in_logit_space():
  """log p(x) = sum log N(logit(p)) + log|dz/dx|, p = a + (1-2a) x/256
  (blog eq. 15-16), computed in numpy; bits/dim divides it by -D ln 2."""
  flow = tf_realnvp.RealNVP((4, 4, 3), num_res_blocks=1, num_filters=4,
                            dtype=tf.float64)
  images = uint8_images((3, 4, 4, 3))
  x = tf_realnvp.dequantize(images, seed=5).numpy().astype(np.float64)
  alpha = 0.05
  p = alpha + (1. - 2. * alpha) * x / 256.
  z = np.log(p) - np.log1p(-p)
  log_det = np.log((1. - 2. * alpha) / 256.) - np.log(p) - np.log1p(-p)
  expected = np.sum(-0.5 * z ** 2 - 0.5 * np.log(2. * np.pi) + log_det,
                    axis=(1, 2, 3))
  np.testing.assert_allclose(flow.log_prob(x), expected, rtol=1e-12)
  np.testing.assert_allclose(
      tf_realnvp.bits_per_dim(flow, images, seed=5),
      -expected / (4 * 4 * 3 * math.log(2.)), rtol=1e-12)


@pytest.mark.parametrize('dtype', [tf.float32, tf.int32])
def test_bits_per_dim_needs_uint8_images(dtype):
  uniform = tfd.Sample(tfd.Uniform(0., 256.), (2, 2, 1))
  with pytest.raises(TypeError, match='uint8'):
    tf_realnvp.bits_per_dim(uniform, tf.zeros((1, 2, 2, 1), dtype), seed=0)


@pytest.mark.parametrize('shape', [(1, 2, 3, 1), (2, 1), (1, 2, 2, 2)])
def test_bits_per_dim_needs_images_of_the_flows_shape(shape):
  uniform = tfd.Sample(tfd.Uniform(0., 256.), (2, 2, 1))
  with pytest.raises(ValueError, match=r'\(2, 2, 1\)'):
    tf_realnvp.bits_per_dim(uniform, tf.zeros(shape, tf.uint8), seed=0)


def test_dequantized_pixels_stay_in_their_bin():
  """k + u with u in [0, 1): float32 rounding must not reach k + 1.

  For k >= 128 that rounding happens when u > 1 - 2^-17; 3 million draws make
  it happen some 20 times.
  """
  images = tf.constant(np.resize(np.arange(128, 256), (4096, 768)), tf.uint8)
  x = tf_realnvp.dequantize(images, seed=7).numpy()
  k = images.numpy().astype(np.float32)
  assert np.all((k <= x) & (x < k + 1.))
  assert np.std(x - k) == pytest.approx(math.sqrt(1. / 12.), rel=0.02)


def test_dequantization_noise_follows_the_seed_alone():
  images = uint8_images((4, 8, 8, 3))
  x = tf_realnvp.dequantize(images, seed=7)
  tf.random.set_seed(123)
  np.testing.assert_array_equal(tf_realnvp.dequantize(images, seed=7), x)
  np.testing.assert_array_equal(
      tf_realnvp.dequantize(images, seed=tf.constant([0, 7])), x)
  assert not np.array_equal(tf_realnvp.dequantize(images, seed=8), x)


def test_dequantize_needs_uint8_images():
  with pytest.raises(TypeError, match='uint8'):
    tf_realnvp.dequantize(tf.zeros((2, 2), tf.float32), seed=0)
