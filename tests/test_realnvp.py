"""The RealNVP distribution: flow properties, density, variables, errors."""

import math
import re

import bijector_checks
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_realnvp
from tf_realnvp import bijectors
from tf_realnvp import training_mode

tfb = tfp.bijectors

TINY = dict(num_res_blocks=1, num_filters=4, num_coupling_layers=4,
            hidden_units=(16, 16))


def flow(event_shape, scale=0.3, **kwargs):
  """A RealNVP with tiny networks, perturbed away from the identity."""
  return bijector_checks.perturb(
      tf_realnvp.RealNVP(event_shape, **{**TINY, **kwargs}), scale=scale)


def data_to_latent(event_shape, **kwargs):
  """`f` of a float64 flow (its `bijector` is `Invert(f)`)."""
  return flow(event_shape, dtype=tf.float64, **kwargs).bijector.bijector


def pixels(shape, seed=0, dtype=tf.float32):
  return tf.constant(np.random.RandomState(seed).uniform(0., 256., shape),
                     dtype)


def events(batch, event_shape):
  """Pixels in [0, 256) for image flows, standard Normal vectors otherwise."""
  shape = (batch,) + event_shape
  if len(event_shape) == 3:
    return pixels(shape)
  return tf.constant(np.random.RandomState(0).normal(size=shape), tf.float32)


def layers_in_order(bijector):
  """The layers of a data-to-latent map in the order they apply, described."""
  if isinstance(bijector, tfb.Composition):
    return [layer for inner in reversed(bijector.bijectors)
            for layer in layers_in_order(inner)]
  if isinstance(bijector, bijectors.FactorOut):
    return [('factor_out', layers_in_order(bijector.bijector))]
  if isinstance(getattr(bijector, 'bijector', None), bijectors.Squeeze):
    return ['unsqueeze']  # tfb.Invert(Squeeze())
  if isinstance(bijector, (bijectors.ActNorm, bijectors.InvertibleConv1x1)):
    channels = bijector.trainable_variables[0].shape[0]
    return [(type(bijector).__name__, channels)]
  if isinstance(bijector, bijectors.AffineCoupling):
    mask = bijector.mask
    for kind, make in (('checkerboard', bijectors.checkerboard_mask),
                       ('channel', bijectors.channel_mask)):
      for parity in (0, 1):
        if mask.ndim == 3 and np.array_equal(mask, make(*mask.shape, parity)):
          return [(kind, parity, mask.shape,
                   bijector.conditioner.stem.units)]
    return [('alternating', int(mask[0] == 0), mask.shape)]
  return [type(bijector).__name__]


@pytest.mark.parametrize('double_filters_at_squeeze', [False, True])
def test_image_flow_follows_the_papers_multi_scale_architecture(
    double_filters_at_squeeze):
  """Per scale: checkerboard even/odd/even, squeeze, channel first/second/
  first, factor out half to the next scale (twice the feature maps), and
  unsqueeze; the last scale: 4 checkerboard couplings. With
  `double_filters_at_squeeze` the channel couplings get twice the feature
  maps of the checkerboard ones before them."""
  f = tf_realnvp.RealNVP(
      (8, 8, 3), num_scales=3, double_filters_at_squeeze=double_filters_at_squeeze,
      **TINY).bijector.bijector
  widen = 2 if double_filters_at_squeeze else 1

  def alternating(kind, parities, shape, filters):
    return [(kind, parity, shape, filters) for parity in parities]

  def scale(shape, filters, rest):
    height, width, channels = shape
    squeezed = (height // 2, width // 2, 4 * channels)
    return (alternating('checkerboard', (0, 1, 0), shape, filters)
            + ['Squeeze']
            + alternating('channel', (0, 1, 0), squeezed, widen * filters)
            + [('factor_out', rest), 'unsqueeze'])

  last = alternating('checkerboard', (0, 1, 0, 1), (2, 2, 12), 16)
  assert layers_in_order(f) == ['LogitPreprocessing'] + scale(
      (8, 8, 3), 4, scale((4, 4, 6), 8, last))
  assert len(tf_realnvp.couplings(f)) == 16


@pytest.mark.parametrize('event_shape, conditioner_options', [
    ((8, 8, 3), None), ((8, 8, 3), dict(batch_norm=True)), ((5,), None)])
def test_batch_norm_couplings_normalize_every_coupling_output(
    event_shape, conditioner_options):
  """A `BatchNorm` after every coupling (with or without batch norm inside
  the networks); in evaluation `log_prob` is each example's own density and
  inverts sampling, in training the batch's."""
  f = flow(event_shape, batch_norm_couplings=True,
           conditioner_options=conditioner_options)
  layers = [layer for layer in layers_in_order(f.bijector.bijector)
            if not isinstance(layer, tuple) or layer[0] != 'factor_out']
  norms = [m for m in f.submodules if isinstance(m, bijectors.BatchNorm)]
  assert len(norms) == len(tf_realnvp.couplings(f))
  flat = [layer[0] if isinstance(layer, tuple) else layer for layer in layers]
  for i, layer in enumerate(flat):
    if layer in ('checkerboard', 'channel', 'alternating'):
      assert flat[i + 1] == 'BatchNorm', flat
  x = f.sample(6, seed=3)
  np.testing.assert_allclose(f.bijector.forward(tf.identity(
      f.bijector.inverse(tf.identity(x)))), x, rtol=1e-3, atol=1e-2)
  changed = tf.concat([x[:1], 0.1 * x[1:]], axis=0)
  np.testing.assert_allclose(f.log_prob(x)[0], f.log_prob(x[:1])[0],
                             rtol=1e-5)
  with training_mode.training():
    first, second = (f.log_prob(batch)[0] for batch in (x, changed))
  assert abs(float(first - second)) > 1e-2


@pytest.mark.parametrize('event_shape, num_scales', [((8, 8, 3), 3), ((5,), 1)])
def test_glow_steps_put_actnorm_and_a_1x1_convolution_before_each_coupling(
    event_shape, num_scales):
  """The same architecture and masks, each coupling on C channels preceded
  by ActNorm and InvertibleConv1x1 on C channels."""
  def with_glow_steps(layers):
    expanded = []
    for layer in layers:
      if isinstance(layer, tuple) and layer[0] == 'factor_out':
        expanded.append(('factor_out', with_glow_steps(layer[1])))
      elif isinstance(layer, tuple):  # A coupling: (kind, parity, shape, ...).
        channels = layer[2][-1]
        expanded += [('ActNorm', channels), ('InvertibleConv1x1', channels),
                     layer]
      else:
        expanded.append(layer)
    return expanded

  def layers(step):
    nvp = tf_realnvp.RealNVP(event_shape, num_scales=num_scales, step=step,
                             **TINY)
    return layers_in_order(nvp.bijector.bijector)
  assert layers('glow') == with_glow_steps(layers('realnvp'))


def test_glow_step_actnorm_initializes_on_the_first_log_prob():
  """Data-dependent init: after one log_prob every ActNorm is set, and the
  first one standardizes the logits of that batch per channel."""
  nvp = tf_realnvp.RealNVP((4, 4, 2), step='glow', **TINY)
  x = pixels((16, 4, 4, 2))
  nvp.log_prob(x)
  actnorms = [m for m in nvp.submodules if isinstance(m, bijectors.ActNorm)]
  assert len(actnorms) == len(tf_realnvp.couplings(nvp)) == 10
  assert all(bool(a.initialized) for a in actnorms)
  # Chains list their layers last-applied first: logit, then the first
  # scale, whose first step starts with its ActNorm.
  logit, first_scale = nvp.bijector.bijector.bijectors[::-1]
  first_actnorm = first_scale.bijectors[-1].bijectors[-1]
  standardized = first_actnorm.forward(logit.forward(x)).numpy()
  np.testing.assert_allclose(standardized.mean(axis=(0, 1, 2)), 0., atol=1e-5)
  np.testing.assert_allclose(standardized.std(axis=(0, 1, 2)), 1., rtol=1e-3)


def test_vector_flow_alternates_its_masks():
  f = tf_realnvp.RealNVP((5,), **TINY).bijector.bijector
  assert layers_in_order(f) == [('alternating', parity, (5,))
                                for parity in (0, 1, 0, 1)]


@pytest.mark.parametrize('event_shape', [(8, 8, 3), (5,)])
def test_trainable_variables_hold_every_weight_and_each_is_used(event_shape):
  nvp = flow(event_shape)
  conditioners = [layer.conditioner for layer in tf_realnvp.couplings(nvp)]
  weights = [getattr(w, 'value', w) for net in conditioners
             for w in net.trainable_weights]
  assert len(nvp.trainable_variables) == len(weights)
  assert {v.ref() for v in nvp.trainable_variables} == {
      w.ref() for w in weights}
  x = events(2, event_shape)
  with tf.GradientTape() as tape:
    log_prob = nvp.log_prob(x)
  gradients = tape.gradient(log_prob, nvp.trainable_variables)
  assert all(g is not None and np.any(g.numpy() != 0) for g in gradients)


def test_paper_cifar10_model_parameter_count():
  """Counted by hand from the architecture of `distribution.py`.

  A ResNet conditioner for C channels with B blocks of F feature maps has a
  3x3 stem and 2 3x3 convolutions per block with weight norm (direction,
  gain, bias), a plain 3x3 head to 2C channels (kernel, bias), plus C
  log-scale factors. Scale 1 has 3 checkerboard couplings on 3 channels and
  3 channel couplings on 12 (after the squeeze), F = 64; scale 2, 4
  checkerboard couplings on the 6 channels left, F = 128.
  """
  def conv(fan_in, units, weight_norm=True):
    return 3 * 3 * fan_in * units + (2 if weight_norm else 1) * units

  def resnet(channels, filters, blocks=8):
    return (conv(channels, filters) + blocks * 2 * conv(filters, filters)
            + conv(filters, 2 * channels, weight_norm=False) + channels)

  expected = 3 * resnet(3, 64) + 3 * resnet(12, 64) + 4 * resnet(6, 128)
  assert expected == 13_167_503
  cifar = tf_realnvp.RealNVP((32, 32, 3))
  assert sum(int(np.prod(v.shape)) for v in cifar.trainable_variables) == (
      expected)
  assert sum(layer.conditioner.count_params()
             for layer in tf_realnvp.couplings(cifar)) == expected


def test_checkpoint_restores_the_same_density_and_saves_each_weight_once(
    tmp_path):
  trained = flow((8, 8, 3))
  path = tf.train.Checkpoint(flow=trained).write(str(tmp_path / 'ckpt'))
  saved = [name for name, _ in tf.train.list_variables(path)
           if name != '_CHECKPOINTABLE_OBJECT_GRAPH']
  assert len(saved) == len(trained.variables)
  fresh = tf_realnvp.RealNVP((8, 8, 3), **TINY)
  tf.train.Checkpoint(flow=fresh).read(path).assert_existing_objects_matched()
  x = pixels((3, 8, 8, 3))
  assert not np.allclose(fresh.log_prob(x), tf_realnvp.RealNVP(
      (8, 8, 3), **TINY).log_prob(x))
  np.testing.assert_array_equal(fresh.log_prob(x), trained.log_prob(x))


def test_2d_density_integrates_to_one_and_matches_its_samples():
  """Midpoint rule on [-8, 8]^2 against the share of 20000 samples in boxes."""
  nvp = flow((2,))
  step = 0.02
  centres = np.arange(-8. + step / 2, 8., step, dtype=np.float32)
  grid = np.stack(np.meshgrid(centres, centres, indexing='ij'), -1)
  density = np.exp(nvp.log_prob(grid.reshape(-1, 2)).numpy()).reshape(
      grid.shape[:2])
  assert density.sum() * step ** 2 == pytest.approx(1., abs=1e-2)
  samples = nvp.sample(20000, seed=tf.constant([3, 4])).numpy()
  for low, high in [((-8, -8), (0, 0)), ((0, -8), (8, 0)), ((-1, -1), (1, 1)),
                    ((-2, 0.5), (1, 3))]:
    cells = np.all((grid > low) & (grid < high), axis=-1)
    mass = density[cells].sum() * step ** 2
    share = np.mean(np.all((samples > low) & (samples < high), axis=-1))
    assert mass > 0.05
    sampling_error = math.sqrt(mass * (1. - mass) / len(samples))
    assert share == pytest.approx(mass, abs=4. * sampling_error + 1e-3)


def test_tfp_minimize_lowers_the_nll_of_two_moons():
  rng = np.random.RandomState(0)
  angle = rng.uniform(0., np.pi, 512)
  upper = rng.uniform(size=512) < 0.5
  moons = np.where(upper[:, None],
                   np.stack([np.cos(angle), np.sin(angle)], 1),
                   np.stack([1. - np.cos(angle), 0.5 - np.sin(angle)], 1))
  data = (moons + rng.normal(0., 0.05, moons.shape)).astype(np.float32)
  nvp = tf_realnvp.RealNVP((2,), num_coupling_layers=4, hidden_units=(32, 32))
  loss = lambda: -tf.reduce_mean(nvp.log_prob(data))
  before = float(loss())
  tfp.math.minimize(loss, num_steps=300, optimizer=tf.optimizers.Adam(1e-2),
                    trainable_variables=nvp.trainable_variables)
  after = float(loss())
  assert after < before - 1., (before, after)


@pytest.mark.parametrize('event_shape', [(8, 8, 3), (2,)])
def test_compiled_log_prob_equals_eager(event_shape):
  nvp = flow(event_shape, scale=0.1)
  x = events(4, event_shape)
  compiled = tf.function(nvp.log_prob, jit_compile=True)
  np.testing.assert_allclose(compiled(x), nvp.log_prob(x), rtol=1e-5)


@pytest.mark.parametrize('event_shape', [(8, 8, 3), (5,)])
def test_each_network_runs_once_per_log_prob_and_per_sample(event_shape):
  nvp = tf_realnvp.RealNVP(event_shape, **TINY)
  layers = tf_realnvp.couplings(nvp)
  calls = bijector_checks.record_conditioner_calls(layers)
  x = nvp.sample(3, seed=tf.constant([0, 3]))
  assert sorted(map(id, calls)) == sorted(map(id, layers))
  calls.clear()
  nvp.log_prob(tf.identity(x))
  assert sorted(map(id, calls)) == sorted(map(id, layers))


@pytest.mark.parametrize('event_shape, num_scales, message', [
    ((30, 32, 3), 3, 'divisible by 4'),
    ((8, 10, 3), 3, 'divisible by 4'),
    ((4, 4, 3), 3, 'too small'),
    ((2, 2, 3), 2, 'too small'),
    ((8, 8, 0), 2, 'at least one channel'),
    ((8, 8, 3), 0, 'at least 1'),
    ((4, 4), 2, 'rank 2'),
    ((2, 2, 2, 2), 2, 'rank 4'),
    ((1,), 2, 'at least 2'),
    ('abc', 2, 'tuple of ints'),
])
def test_unusable_event_shapes_are_rejected(event_shape, num_scales, message):
  with pytest.raises(ValueError, match=message):
    tf_realnvp.RealNVP(event_shape, num_scales=num_scales)


def test_unusable_settings_are_rejected():
  with pytest.raises(TypeError, match='floating.*int32'):
    tf_realnvp.RealNVP((2,), dtype=tf.int32)
  with pytest.raises(ValueError, match="coupling.*'quadratic'"):
    tf_realnvp.RealNVP((2,), coupling='quadratic')
  with pytest.raises(ValueError, match="step.*'maf'"):
    tf_realnvp.RealNVP((2,), step='maf')
  with pytest.raises(ValueError, match='temperature'):
    tf_realnvp.with_temperature(tf_realnvp.RealNVP((2,)), 0.)


@pytest.mark.parametrize('event_shape, data_shape', [
    ((32, 32, 3), (2, 31, 32, 3)), ((8, 8, 3), (8, 8, 4)), ((2,), (4, 3))])
def test_data_of_another_shape_is_rejected_naming_both_shapes(event_shape,
                                                              data_shape):
  nvp = tf_realnvp.RealNVP(event_shape, **TINY)
  message = re.escape(str(event_shape)) + '.*' + re.escape(str(data_shape))
  with pytest.raises(ValueError, match=message):
    nvp.log_prob(tf.fill(data_shape, 1.))


@pytest.mark.parametrize('value', [-20., 300., np.nan])
def test_pixels_outside_the_support_raise_by_default(value):
  nvp = tf_realnvp.RealNVP((4, 4, 3), **TINY)
  x = pixels((2, 4, 4, 3)).numpy()
  x[1, 2, 3, 0] = value
  with pytest.raises(tf.errors.InvalidArgumentError, match='intensities'):
    nvp.log_prob(x)


def test_edges_of_the_pixel_range_and_samples_are_finite():
  """0, 255.999 and 256 have finite log_prob; so do samples, which may lie
  a little outside [0, 256] (the logit's support is wider)."""
  nvp = flow((4, 4, 3), scale=0.1)
  edges = tf.constant(np.resize([0., 255.999, 256.], (3, 4, 4, 3)),
                      tf.float32)
  assert np.all(np.isfinite(nvp.log_prob(edges)))
  samples = nvp.sample(200, seed=tf.constant([1, 1]))
  assert np.all(np.isfinite(samples))
  assert np.all(np.isfinite(nvp.log_prob(samples)))


@pytest.mark.parametrize('event_shape', [(8, 8, 3), (5,)])
def test_float64_end_to_end_agrees_with_float32(event_shape):
  flows = [flow(event_shape, dtype=dtype) for dtype in (tf.float32,
                                                        tf.float64)]
  for single, double in zip(*(f.trainable_variables for f in flows)):
    double.assign(tf.cast(single, tf.float64))
  samples = flows[1].sample(4, seed=tf.constant([2, 5]))
  assert samples.dtype == tf.float64 and np.all(np.isfinite(samples))
  with tf.GradientTape() as tape:
    log_prob = flows[1].log_prob(tf.identity(samples))  # no cache hit
  assert log_prob.dtype == tf.float64
  gradients = tape.gradient(log_prob, flows[1].trainable_variables)
  assert all(g.dtype == tf.float64 and np.all(np.isfinite(g))
             for g in gradients)
  np.testing.assert_allclose(
      flows[0].log_prob(tf.cast(samples, tf.float32)), log_prob, rtol=1e-5)


def test_mixed_bfloat16_networks_keep_float32_outputs_and_invert():
  """bf16 networks see the same kept entries in both directions, so the
  coupling arithmetic (float32) inverts to float32 precision; the density
  agrees with float32 networks to bf16 precision."""
  mixed = flow((8, 8, 3), scale=0.1, network_dtype='mixed_bfloat16')
  full = tf_realnvp.RealNVP((8, 8, 3), **TINY)
  for ours, theirs in zip(full.trainable_variables, mixed.trainable_variables):
    ours.assign(theirs)
  x = pixels((3, 8, 8, 3))
  log_prob = mixed.log_prob(x)
  assert log_prob.dtype == tf.float32
  bits = lambda lp: -lp / (8 * 8 * 3 * math.log(2.))
  np.testing.assert_allclose(bits(log_prob), bits(full.log_prob(x)),
                             atol=1e-3)
  z = mixed.bijector.inverse(x)
  np.testing.assert_allclose(mixed.bijector.forward(tf.identity(z)), x,
                             atol=1e-3)
  samples = mixed.sample(3, seed=tf.constant([0, 1]))
  assert samples.dtype == tf.float32 and np.all(np.isfinite(samples))


def test_temperature_scales_the_base_distribution():
  nvp = flow((2,))
  tempered = tf_realnvp.with_temperature(nvp, 0.5)
  x = tf.random.stateless_normal((5, 2), [0, 6])
  z = nvp.bijector.inverse(x)
  base_change = tf.reduce_sum(
      tfp.distributions.Normal(0., 0.5).log_prob(z)
      - tfp.distributions.Normal(0., 1.).log_prob(z), -1)
  np.testing.assert_allclose(tempered.log_prob(x),
                             nvp.log_prob(x) + base_change, rtol=1e-5)
  np.testing.assert_allclose(tf_realnvp.with_temperature(nvp, 1.).log_prob(x),
                             nvp.log_prob(x), rtol=1e-6)


def test_nice_changes_volume_only_through_its_last_scaling_layer():
  """Additive couplings have log-det 0, so log|det df/dx| = sum(s) for all x."""
  f = data_to_latent((5,), coupling='additive')
  scaling = f.bijectors[0]  # Chains list the last-applied layer first.
  assert isinstance(scaling, tfb.Scale)
  x = tf.random.stateless_normal((7, 5), [4, 2], dtype=tf.float64) * 3.
  log_det = f.forward_log_det_jacobian(x, event_ndims=1)
  assert float(tf.reduce_sum(tf.abs(scaling.log_scale))) > 0.1
  np.testing.assert_allclose(
      log_det, np.full(7, tf.reduce_sum(scaling.log_scale)), rtol=1e-10)


def test_weight_scale_l2_sums_the_squared_gains():
  """At initialisation the hidden layers' gains are 1; heads have none."""
  nvp = tf_realnvp.RealNVP((2,), **TINY)
  np.testing.assert_allclose(tf_realnvp.weight_scale_l2(nvp), 4 * (16 + 16))
  with tf.GradientTape() as tape:
    penalty = tf_realnvp.weight_scale_l2(nvp)
  gradients = tape.gradient(penalty, nvp.trainable_variables)
  gains = [v for v in nvp.trainable_variables if 'gain' in v.name]
  assert len(gains) == 4 * 2
  assert sum(g is not None for g in gradients) == len(gains)


# Affine couplings on images: in image_glow and image_batch_norm; squeezes
# and a factor-out in image_glow, one scale in the others.
EMPTY_BATCH_FLOWS = {
    'vector': ((5,), {}),
    'image_glow': ((8, 8, 3), dict(step='glow')),
    'vector_glow': ((5,), dict(step='glow')),
    'image_additive': ((4, 4, 3), dict(coupling='additive', num_scales=1)),
    'image_batch_norm': ((4, 4, 3), dict(
        num_scales=1, batch_norm_couplings=True,
        conditioner_options=dict(batch_norm=True))),
    'vector_batch_norm': ((5,), dict(batch_norm_couplings=True)),
}


@pytest.mark.parametrize('name', sorted(EMPTY_BATCH_FLOWS))
def test_empty_batches_give_empty_log_probs_and_samples(name):
  """No events in, no results out: eagerly, traced with an unknown batch
  size, and in training mode, where the flow's variables (ActNorm's
  initialization, running averages) stay as they were."""
  event_shape, settings = EMPTY_BATCH_FLOWS[name]
  nvp = tf_realnvp.RealNVP(event_shape, **{**TINY, **settings})
  empty = tf.zeros((0,) + event_shape)
  before = [v.numpy() for v in nvp.variables]
  log_prob = tf.function(nvp.log_prob, input_signature=[
      tf.TensorSpec((None,) + event_shape)])
  sample = tf.function(lambda n: nvp.sample(n), input_signature=[
      tf.TensorSpec([], tf.int32)])
  for results in ([nvp.log_prob(empty), nvp.sample(0)],
                  [log_prob(empty), sample(0)]):
    assert [r.shape for r in results] == [(0,), (0,) + event_shape]
  with training_mode.training():
    assert nvp.log_prob(empty).shape == (0,)
  for old, new in zip(before, nvp.variables):
    np.testing.assert_array_equal(new, old, err_msg=new.name)
  assert log_prob(events(2, event_shape)).shape == (2,)
