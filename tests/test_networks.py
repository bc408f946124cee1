"""Conditioners: shapes, identity start, bounded log-scale, weight norm."""

import os
import subprocess
import sys

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp import networks
from tf_realnvp import training_mode

CONDITIONERS = {
    'resnet': (lambda **kwargs: networks.ResNetConditioner(
        3, num_blocks=2, num_filters=4, **kwargs), (2, 4, 4, 3)),
    'mlp': (lambda **kwargs: networks.MLPConditioner(
        5, hidden_units=(16, 16), **kwargs), (2, 5)),
}


def conditioner_and_input(name, **kwargs):
  make, input_shape = CONDITIONERS[name]
  x = tf.random.stateless_normal(input_shape, [0, 4])
  net = make(**kwargs)
  net(x)  # builds the variables
  return net, x


@pytest.mark.parametrize('name', sorted(CONDITIONERS))
def test_fresh_conditioner_outputs_zeros_of_the_events_shape(name):
  """The zero-initialised head starts every coupling as the identity."""
  net, x = conditioner_and_input(name)
  shift, log_scale = net(x)
  for output in (shift, log_scale):
    assert output.shape == x.shape
    np.testing.assert_array_equal(output, 0.)
  additive, _ = conditioner_and_input(name, additive=True)
  shift, log_scale = additive(x)
  assert shift.shape == x.shape and log_scale is None


@pytest.mark.parametrize('name', sorted(CONDITIONERS))
def test_log_scale_is_bounded_by_its_learned_factor(name):
  """`s = scale * tanh(h)`: |s| <= |scale| per channel, however large h is."""
  net, x = conditioner_and_input(name)
  bijector_checks.perturb(net, scale=3.)
  _, log_scale = net(10. * x)
  bound = np.abs(net.log_scale_factor.numpy())
  assert np.all(np.abs(log_scale) <= bound + 1e-6)
  assert np.max(np.abs(log_scale) / bound) > 0.5  # the bound is reached


@pytest.mark.parametrize('name, num_gains', [('resnet', 5), ('mlp', 2)])
def test_scale_weights_are_the_gains_of_every_layer(name, num_gains):
  """stem + 2 per block for the ResNet; the hidden layers of the MLP. The
  head is a plain zero-initialized layer, without gains."""
  net, _ = conditioner_and_input(name)
  gains = net.scale_weights
  assert len(gains) == num_gains
  assert all(g.name == 'gain' and len(g.shape) == 1 for g in gains)


def test_weight_norm_dense_computes_g_v_over_norm_v_plus_b():
  layer = networks.WeightNormDense(3)
  x = np.random.RandomState(0).normal(size=(4, 5)).astype(np.float32)
  layer(x)
  bijector_checks.perturb(layer)
  v, g, b = (w.numpy() for w in (layer.direction, layer.gain, layer.bias))
  expected = x @ (g * v / np.linalg.norm(v, axis=0)) + b
  np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_residual_block_adds_its_bias_after_the_skip():
  """`h + conv(relu(conv(relu(h)))) + b`, with one bias for the two sums."""
  block = networks.ResidualBlock(4)
  h = tf.random.stateless_normal((2, 4, 4, 4), [0, 6])
  block(h)
  bijector_checks.perturb(block)
  assert not block.second.use_bias
  expected = (h + block.second(tf.nn.relu(block.first(tf.nn.relu(h))))
              + block.bias)
  np.testing.assert_allclose(block(h), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kernel_size', [None, 3])
def test_weight_norm_output_ignores_the_directions_length(kernel_size):
  layer = networks.WeightNormDense(3, kernel_size)
  x = tf.random.stateless_normal((2, 4, 4, 2), [0, 5])
  before = layer(x)
  layer.direction.assign(layer.direction * 7.)
  np.testing.assert_allclose(layer(x), before, rtol=1e-5, atol=1e-6)
  assert layer.count_params() == (
      (kernel_size or 1) ** 2 * 2 * 3 + 3 + 3)  # v, g, b


def test_mlp_parameter_count():
  """Hidden layers `fan_in * units + 2 units` (v, g, b); the plain head
  `fan_in * 2D + 2D`; the log-scale factor D."""
  net, _ = conditioner_and_input('mlp')
  hidden = (5 * 16 + 2 * 16) + (16 * 16 + 2 * 16)
  head = 16 * 10 + 10
  assert net.count_params() == hidden + head + 5


@pytest.mark.parametrize('name', sorted(CONDITIONERS))
@pytest.mark.parametrize('policy, atol', [('float64', 1e-6),
                                          ('mixed_bfloat16', 1e-2)])
def test_other_dtype_policies_give_the_float32_result(name, policy, atol):
  """float64 computes in float64; mixed_bfloat16 keeps float32 weights and
  outputs (the head runs in float32) with bf16 convolutions inside."""
  reference, x = conditioner_and_input(name)
  other = CONDITIONERS[name][0](dtype=policy)
  other(tf.cast(x, other.compute_dtype))
  bijector_checks.perturb(reference, scale=0.3)
  for ours, theirs in zip(reference.weights, other.weights):
    assert theirs.dtype == ('float64' if policy == 'float64' else 'float32')
    theirs.assign(tf.cast(ours, theirs.dtype))
  expected = reference(x)
  outputs = other(tf.cast(x, other.compute_dtype))
  for output, want in zip(outputs, expected):
    assert output.dtype == other.variable_dtype
    np.testing.assert_allclose(output, want, atol=atol)


def test_mixed_policy_runs_only_the_hidden_layers_in_bfloat16():
  """Stem, residual stream and head in float32; block convolutions in bf16."""
  net = networks.ResNetConditioner(3, num_blocks=2, num_filters=8,
                                   dtype='mixed_bfloat16')
  x = tf.random.stateless_normal((2, 4, 4, 3), [0, 1])
  net(x)
  assert (net.stem.compute_dtype, net.head.compute_dtype) == ('float32',) * 2
  assert {layer.compute_dtype for block in net.blocks
          for layer in (block.first, block.second)} == {'bfloat16'}
  h = net.stem(x)
  assert net.blocks[0](h).dtype == tf.float32


def test_grappler_optimizes_the_conditioner_without_errors():
  """Every Grappler pass succeeds on a traced ResNet conditioner.

  Grappler (TF 2.21, oneDNN) logs "remapper failed" and drops that pass's
  fusions when two residual blocks in a row end in convolution, bias add and
  skip addition; `ResidualBlock` adds its bias after the skip to avoid it.
  The log comes from C++, so the check reads a child process's stderr.
  """
  program = '\n'.join([
      'import tensorflow as tf',
      'from tf_realnvp import networks',
      'net = networks.ResNetConditioner(3, num_blocks=3, num_filters=8)',
      'x = tf.random.normal((2, 8, 8, 3))',
      'net(x)',
      'tf.function(net)(x)',
  ])
  child = subprocess.run(
      [sys.executable, '-c', program], capture_output=True, text=True,
      timeout=300, check=True,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '0'})  # Let errors through.
  failures = [line for line in child.stderr.splitlines()
              if 'optimizer' in line and 'failed' in line]
  assert not failures, failures


def batch_norm_resnet(**kwargs):
  net = networks.ResNetConditioner(3, num_blocks=2, num_filters=4,
                                   batch_norm=True, **kwargs)
  x = tf.random.stateless_normal((6, 4, 4, 3), [0, 7])
  net(x)
  return bijector_checks.perturb(net), x


def test_batch_norm_uses_batch_statistics_only_in_training_mode():
  """Evaluation: each example's output is its own; training: the batch's."""
  net, x = batch_norm_resnet(concat_relu_input=True)
  changed = tf.concat([x[:1], 3. * x[1:] + 1.], axis=0)
  evaluation = [net(batch)[1][0] for batch in (x, changed)]
  np.testing.assert_allclose(evaluation[0], evaluation[1], atol=1e-6)
  np.testing.assert_allclose(evaluation[0], net(x[:1])[1][0], atol=1e-6)
  with training_mode.training():
    training = [net(batch)[1][0] for batch in (x, changed)]
  assert np.max(np.abs(training[0] - training[1])) > 1e-3


def test_batch_norm_updates_running_averages_only_in_training_mode():
  net, x = batch_norm_resnet(concat_relu_input=True)
  norm = net.input_norm
  before = norm.moving_mean.numpy()
  net(x)
  np.testing.assert_array_equal(norm.moving_mean.numpy(), before)
  with training_mode.training():
    net(x)
  batch_mean = np.mean(x.numpy(), axis=(0, 1, 2))
  np.testing.assert_allclose(norm.moving_mean.numpy(),
                             0.9 * before + 0.1 * batch_mean, rtol=1e-5)


def test_batch_norm_statistics_are_synchronized_across_replicas(two_replicas):
  """Two replicas with half the batch each compute what one device does."""
  strategy = two_replicas
  with strategy.scope():
    net, x = batch_norm_resnet(concat_relu_input=True)
  single = networks.ResNetConditioner(3, num_blocks=2, num_filters=4,
                                      batch_norm=True, concat_relu_input=True)
  single(x)
  for theirs, ours in zip(single.weights, net.weights):
    theirs.assign(ours.value if hasattr(ours, 'value') else ours)

  halves = strategy.experimental_distribute_values_from_function(
      lambda context: x[3 * context.replica_id_in_sync_group:][:3])
  with training_mode.training():  # Set around the call: the replicas' threads see it.
    per_replica = strategy.run(tf.function(lambda batch: net(batch)[1]),
                               (halves,))
  distributed = tf.concat(strategy.experimental_local_results(per_replica), 0)
  with training_mode.training():
    expected = single(x)[1]
    first_half_alone = single(x[:3])[1]
  # Synchronized statistics use E[x^2] - E[x]^2, a float32 round-off of
  # about 2e-5 here; statistics of one replica's half alone are 100x off.
  np.testing.assert_allclose(distributed, expected, atol=1e-4)
  assert np.max(np.abs(first_half_alone - expected[:3])) > 1e-3


def test_skip_outputs_sum_a_1x1_convolution_of_every_block():
  """Stem and each block get a 1x1 skip convolution, all weight-normalized."""
  plain, x = conditioner_and_input('resnet')
  net, _ = conditioner_and_input('resnet', skip_outputs=True)
  assert len(net.skips) == 3
  assert len(net.scale_weights) == len(plain.scale_weights) + 3
  assert net.count_params() == plain.count_params() + 3 * (4 * 4 + 2 * 4)
  bijector_checks.perturb(net)
  h = net.stem(x)
  total = net.skips[0](h)
  for block, skip in zip(net.blocks, net.skips[1:]):
    h = block(h)
    total += skip(h)
  np.testing.assert_allclose(
      net(x)[0], net._outputs(tf.nn.relu(total))[0], atol=1e-5)


def test_concat_relu_input_feeds_both_signs_to_the_stem():
  net, x = conditioner_and_input('resnet', concat_relu_input=True)
  assert net.stem.direction.shape == (3, 3, 6, 4)
  bijector_checks.perturb(net)
  stem_input = tf.concat([tf.nn.relu(x), tf.nn.relu(-x)], axis=-1)
  h = net.stem(stem_input)
  for block in net.blocks:
    h = block(h)
  np.testing.assert_allclose(
      net(x)[1], net._outputs(tf.nn.relu(h))[1], atol=1e-5)
