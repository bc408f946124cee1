"""Conditioners: shapes, identity start, bounded log-scale, weight norm."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_realnvp import networks

import bijector_checks

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


@pytest.mark.parametrize('name, num_gains', [('resnet', 6), ('mlp', 3)])
def test_scale_weights_are_the_gains_of_every_layer(name, num_gains):
  """stem + 2 per block + head for the ResNet; hidden layers + head, MLP."""
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
  """Dense layers `fan_in * units + 2 units` (v, g, b); head 2D; scale D."""
  net, _ = conditioner_and_input('mlp')
  hidden = (5 * 16 + 2 * 16) + (16 * 16 + 2 * 16)
  head = 16 * 10 + 2 * 10
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
