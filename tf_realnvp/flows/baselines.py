"""The flows RealNVP is compared with on vectors: MAF, IAF and FFJORD."""

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tf_realnvp.flows.flow import from_data_to_latent

tfb = tfp.bijectors


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

  autoregressive bijectors) and FFJORD (TFP's continuous-time flow), each a
  `Flow` built by `from_data_to_latent` like RealNVP itself.
  """
  layers = []  # Data to latent.
  for i in range(num_layers):
    if i:
      layers.append(tfb.Permute(list(reversed(range(dims)))))
    made = tfb.AutoregressiveNetwork(
        params=2, event_shape=(dims,), hidden_units=list(hidden_units),
        activation='relu', dtype=dtype)
    made(tf.zeros((1, dims), dtype))  # Creates the weights now.
    # TFP's MAF maps noise to data in `forward`.
    maf = tfb.MaskedAutoregressiveFlow(made)
    layers.append(maf if inverse else tfb.Invert(maf))
  return from_data_to_latent(layers, (dims,), dtype,
                             default_name='iaf' if inverse else 'maf')


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
  # TFP's FFJORD maps noise to data in `forward`.
  return from_data_to_latent([tfb.Invert(bijector)], (dims,), dtype,
                             default_name='ffjord')


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
