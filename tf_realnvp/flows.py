"""RealNVP and the flows it is compared with, for vector data, as TFP distributions.

`make_flow(kind, event_shape, **settings)` returns, for every kind, a
`tfd.TransformedDistribution` of a standard Normal through a bijector, the
same kind of object as `tf_realnvp.RealNVP`: `log_prob`, `sample`,
`trainable_variables`, checkpoints and the SavedModel export
(`tf_realnvp.export`) treat them all alike. TFP's bijectors map base samples to data, so
`flow.bijector.forward` samples and `flow.bijector.inverse` is the
data-to-latent map of the density.

| kind      | flow                                         | fast direction |
|-----------|----------------------------------------------|----------------|
| `realnvp` | affine couplings (Dinh et al. 2017)          | both           |
| `nice`    | additive couplings (Dinh et al. 2015)        | both           |
| `maf`     | masked autoregressive (Papamakarios 2017)    | density        |
| `iaf`     | inverse autoregressive (Kingma et al. 2016)  | sampling       |
| `glow`    | actnorm, 1x1 mixing, coupling (Kingma 2018)  | both           |
| `ffjord`  | continuous-time ODE (Grathwohl et al. 2019)  | neither        |

Initial weights come from the global random state of TensorFlow and Keras:
`keras.utils.set_random_seed(seed)` before `make_flow` makes a flow
reproducible. The autoregressive and ODE networks are TFP's `tf_keras`
layers; the couplings use this package's Keras 3 conditioners.
"""

import functools

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tf_realnvp.distribution import RealNVP

tfb = tfp.bijectors
tfd = tfp.distributions


def coupling_flow(dims, coupling='affine', step='realnvp', num_layers=8,
                  hidden_units=(128, 128), batch_norm_couplings=False,
                  dtype=tf.float32, network_dtype=None, validate_args=True):
  """RealNVP, NICE or Glow on vectors: `tf_realnvp.RealNVP((dims,), ...)`.

  `num_layers` couplings with alternating masks and MLP conditioners:
  affine (`coupling='affine'`, RealNVP) or additive (`'additive'`, NICE,
  volume preserving, followed by NICE's learned diagonal scaling). With
  `step='glow'` each coupling is preceded by `ActNorm` (data-initialized on
  the first `log_prob` batch) and `InvertibleConv1x1`, for vectors an
  invertible dense mixing that starts as a random rotation: Glow's step of
  flow. Both directions cost one network
  pass per layer. `batch_norm_couplings` follows every coupling with the
  paper's `BatchNorm` bijector. `network_dtype` is the conditioners' dtype
  policy (e.g. `'mixed_bfloat16'`).

  References: Dinh, Sohl-Dickstein, Bengio, Density estimation using Real
  NVP, ICLR 2017, https://arxiv.org/abs/1605.08803; Dinh, Krueger, Bengio,
  NICE, ICLR 2015 workshop, https://arxiv.org/abs/1410.8516; Kingma,
  Dhariwal, Glow: Generative Flow with Invertible 1x1 Convolutions, NeurIPS
  2018, https://arxiv.org/abs/1807.03039.
  """
  if step == 'glow':
    name = 'glow'
  else:
    name = 'nice' if coupling == 'additive' else 'realnvp'
  return RealNVP((dims,), num_coupling_layers=num_layers,
                 hidden_units=hidden_units, coupling=coupling, step=step,
                 batch_norm_couplings=batch_norm_couplings, dtype=dtype,
                 network_dtype=network_dtype, validate_args=validate_args,
                 name=name)


def masked_autoregressive_flow(dims, num_layers=5, hidden_units=(128, 128),
                               dtype=tf.float32, inverse=False):
  """MAF, or with `inverse=True` IAF: stacked affine autoregressive layers.

  Each layer is `tfb.MaskedAutoregressiveFlow` with a MADE network
  (`tfb.AutoregressiveNetwork`, Germain et al. 2015) giving, for every
  entry, a shift `mu_i` and log-scale `alpha_i` that depend only on the
  entries before it; the order is reversed (`tfb.Permute`) between layers.
  MADE's masks are kernel constraints: Keras optimizers re-apply them after
  every update, a hand-written update rule must apply `variable.constraint`.

  MAF (Papamakarios et al. 2017) conditions on the data: noise to data is
  `x_i = z_i exp(alpha_i(x_<i)) + mu_i(x_<i)`, data to noise
  `z = (x - mu(x)) exp(-alpha(x))`, one network pass. So `log_prob` is fast
  (one pass per layer) and `sample` slow (`dims` sequential passes per layer).

  IAF (Kingma et al. 2016) is the same stack inverted, `tfb.Invert(maf)`:
  sampling maps noise through `z -> (z - mu(z)) exp(-alpha(z))`, one pass per
  layer, while the density needs `dims` sequential passes per layer.

  References: Papamakarios, Pavlakou, Murray, Masked Autoregressive Flow for
  Density Estimation, NeurIPS 2017, https://arxiv.org/abs/1705.07057;
  Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling, Improved
  Variational Inference with Inverse Autoregressive Flow, NeurIPS 2016,
  https://arxiv.org/abs/1606.04934.
  """
  noise_to_data = []
  for i in range(num_layers):
    if i:
      noise_to_data.append(tfb.Permute(list(reversed(range(dims)))))
    made = tfb.AutoregressiveNetwork(
        params=2, event_shape=(dims,), hidden_units=list(hidden_units),
        activation='relu', dtype=dtype)
    made(tf.zeros((1, dims), dtype))  # Creates the weights now.
    noise_to_data.append(tfb.MaskedAutoregressiveFlow(made))
  bijector = tfb.Chain(noise_to_data[::-1])  # Chain applies the last first.
  return _flow(tfb.Invert(bijector) if inverse else bijector, dims, dtype,
               'iaf' if inverse else 'maf')


def ffjord_flow(dims, hidden_units=(64, 64, 64), dtype=tf.float32, rtol=1e-3,
                atol=1e-5):
  """FFJORD: the flow of an ODE `dx/dt = f(x, t)` from `t = 0` to `t = 1`.

  `tfb.FFJORD` integrates `f` (an MLP with tanh units on `[x, t]`) from the
  base sample to the data point with the Dormand-Prince solver
  (`tfp.math.ode.DormandPrince`, tolerances `rtol`, `atol`), and the
  log-density along with it by the instantaneous change of variables
  `d log p(x(t)) / dt = -tr(df/dx)`; the trace is computed exactly
  (`trace_jacobian_exact`, `dims` backward passes per evaluation of `f`,
  cheap for 2-D data). Neither direction is fast: both `sample` and
  `log_prob` solve the ODE (TFP integrates the trace in both), with as many
  evaluations of `f` as the solver needs for its tolerances.

  Reference: Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud, FFJORD:
  Free-form Continuous Dynamics for Scalable Reversible Generative Models,
  ICLR 2019, https://arxiv.org/abs/1810.01367.
  """
  solver = tfp.math.ode.DormandPrince(rtol=rtol, atol=atol)
  bijector = tfb.FFJORD(
      state_time_derivative_fn=TimeConditionedMLP(dims, hidden_units, dtype),
      ode_solve_fn=solver.solve,
      trace_augmentation_fn=tfb.ffjord.trace_jacobian_exact, dtype=dtype)
  return _flow(bijector, dims, dtype, 'ffjord')


class TimeConditionedMLP(tf.Module):
  """`(t, x) -> dx/dt`: a tanh MLP on the state with the time appended."""

  def __init__(self, dims, hidden_units, dtype, name='state_time_derivative'):
    super().__init__(name=name)
    self.network = tf_keras.Sequential(
        [tf_keras.layers.Dense(units, activation='tanh', dtype=dtype)
         for units in hidden_units]
        + [tf_keras.layers.Dense(dims, dtype=dtype)])
    self.network.build((None, dims + 1))

  def __call__(self, time, state):
    """`state` of any batch shape `[..., dims]`, `time` a scalar."""
    time = tf.broadcast_to(tf.cast(time, state.dtype),
                           tf.shape(state[..., :1]))
    inputs = tf.concat([state, time], axis=-1)
    derivative = self.network(tf.reshape(inputs, [-1, inputs.shape[-1]]))
    return tf.reshape(derivative, tf.shape(state))


# Flows built by `tf_realnvp.RealNVP`, for images as well as vectors, and the
# `RealNVP` arguments that make each.
COUPLING_FLOWS = {
    'realnvp': {},
    'nice': dict(coupling='additive'),
    'glow': dict(step='glow'),
}

FLOWS = {
    'realnvp': coupling_flow,
    'nice': functools.partial(coupling_flow, **COUPLING_FLOWS['nice']),
    'maf': masked_autoregressive_flow,
    'iaf': functools.partial(masked_autoregressive_flow, inverse=True),
    'glow': functools.partial(coupling_flow, **COUPLING_FLOWS['glow']),
    'ffjord': ffjord_flow,
}


def make_flow(kind, event_shape=(2,), **settings):
  """A flow of the given kind over vectors of `event_shape = (D,)`.

  Args:
    kind: one of `FLOWS`: 'realnvp', 'nice', 'maf', 'iaf', 'glow', 'ffjord'.
    event_shape: `(D,)`, `D >= 2`.
    **settings: keyword arguments of the kind's builder in this module:
      `num_layers`, `hidden_units`, `dtype`; for 'realnvp', 'nice' and
      'glow' also `network_dtype` and `validate_args`; for 'ffjord'
      `hidden_units`, `dtype`, `rtol`, `atol`.

  Returns:
    A `tfd.TransformedDistribution` over a standard Normal, event shape
    `(D,)`.

  Raises:
    ValueError: for an unknown kind or an event shape that is not `(D,)`.
  """
  if kind not in FLOWS:
    raise ValueError(f'kind must be one of {tuple(FLOWS)}, got {kind!r}.')
  event_shape = tuple(event_shape)
  if len(event_shape) != 1 or event_shape[0] < 2:
    raise ValueError(
        f'make_flow builds flows of vectors, event_shape=(D,) with D >= 2; '
        f'got {event_shape}.')
  return FLOWS[kind](int(event_shape[0]), **settings)


def _flow(bijector, dims, dtype, name):
  """Standard Normal on `dims` entries, through `bijector` (noise to data)."""
  base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)),
                    sample_shape=[dims])
  return tfd.TransformedDistribution(base, bijector, name=name)
