"""The training objective and bits/dim, and that every training loop uses them."""

import math

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import models
import tf_realnvp
from tf_realnvp import training
from tf_realnvp.flows import objective
from tf_realnvp.training import optimizers


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
