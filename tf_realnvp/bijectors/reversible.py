"""A flow trained without keeping its activations (Gomez et al., 2017)."""

import tensorflow as tf

from tf_realnvp import recompute
from tf_realnvp import training_mode
from tf_realnvp.bijectors.context import CONDITIONAL_INPUT
from tf_realnvp.bijectors.context import takes_context
from tf_realnvp.bijectors.context_chain import ContextChain
from tf_realnvp.bijectors.factor_out import FactorOut
from tf_realnvp.bijectors.one_pass import OnePassBijector


class Reversible(OnePassBijector):
  """A `ContextChain` whose gradients rebuild each layer's input from its
  output.

  Backpropagation through a chain `y = f_L(...f_1(x))` needs every layer's
  input. Since each layer is invertible, the backward pass can rebuild them
  instead of keeping them (the reversible residual network of Gomez et al.,
  2017): from the chain's output `y_L`, layer by layer from the last,

      x_l = f_l^{-1}(y_l),   then   (y_l, log|det f_l'|) = f_l(x_l)

  again under a gradient tape, which gives the gradients of `x_l` and of the
  layer's weights from those of `y_l` and of the log-det. Training then keeps
  the chain's output and one layer's activations at a time: memory does not
  grow with the number of layers (it still grows with each network's
  depth, by one residual block's input per block: `networks.ResidualBlock`),
  for one more network pass per coupling (its inverse) than
  `recompute='networks'`.

  The rebuilt `x_l` differs from the forward pass's by float round-off: an
  affine coupling computes `x = (y - t) exp(-s)` with the same `t` and `s`
  its forward pass used (they depend on the kept entries alone, which pass
  unchanged), so each layer adds an error of a few units in the last place
  of `x`, and the gradients differ from the stored ones by about that
  relative amount times the number of layers (tested in
  `tests/test_recompute.py`). A layer whose inverse is ill-conditioned (a
  spline with nearly flat bins) rebuilds its input only as well as its own
  round trip does, and nothing falls back to a kept input: check
  `inverse(forward(x))` of such a flow. The layers must be exactly
  invertible, in training mode too: not `BatchNorm`, which normalizes with
  the statistics of the input it would rebuild. Nested `ContextChain`s and
  `FactorOut` are walked through; every other bijector is a layer.

  Outside training mode (evaluation, sampling, exports) and in `inverse`,
  this is the chain itself.

  #### References

  [1]: Aidan N. Gomez, Mengye Ren, Raquel Urtasun, Roger B. Grosse. The
       Reversible Residual Network: Backpropagation Without Storing
       Activations. NeurIPS 2017. https://arxiv.org/abs/1707.04585
  """

  def __init__(self, chain, validate_args=False, name='reversible'):
    """Wraps `chain`.

    Args:
      chain: a `ContextChain` of exactly invertible layers (see above).
      validate_args: Python `bool`, whether to check inputs at run time.
      name: name of the bijector.
    """
    parameters = dict(locals())
    if not isinstance(chain, ContextChain):
      raise TypeError(f'Reversible wraps a ContextChain, got {chain!r}.')
    self._bijector = self._no_dependency(chain)
    # Its layers' checkpoint names are the chain's own (TFP's `Composition`
    # tracks them there), so a checkpoint restores with or without it.
    self._bijectors_trackable = chain.bijectors
    self._event_ndims = chain.forward_min_event_ndims
    with tf.name_scope(name) as name:
      super().__init__(
          forward_min_event_ndims=self._event_ndims,
          validate_args=validate_args, parameters=parameters, name=name)

  @property
  def chain(self):
    return self._bijector

  @property
  def conditional(self):
    """Whether the inner flow reads `conditional_input`."""
    return takes_context(self._bijector)

  def _forward_and_log_det(self, x, **context):
    if not training_mode.is_training():
      return self._layer_forward(self._bijector, x, context)
    if context.get(CONDITIONAL_INPUT) is not None:
      context = {CONDITIONAL_INPUT: tf.convert_to_tensor(
          context[CONDITIONAL_INPUT])}
    differentiable = [c for c in context.values() if c.dtype.is_floating]

    @tf.custom_gradient
    def run(x, *float_context):
      values = dict(context, **(
          {CONDITIONAL_INPUT: float_context[0]} if float_context else {}))
      y, log_det = self._layer_forward(self._bijector, x, values)

      def gradient(dy, dlog_det, variables=()):
        y_again, = recompute.after_gradients([y], [dy])
        with recompute.recomputing():
          _, dx, gradients = self._backward(
              self._bijector, y_again, dy, dlog_det, values,
              float_context[0] if float_context else None)
        dcontext = [gradients.pop('context', tf.zeros_like(c))
                    for c in float_context]
        return [dx] + dcontext, [
            gradients.get(v.ref(), tf.zeros_like(v)) for v in variables]

      return (y, log_det), gradient

    return run(x, *differentiable)

  def _inverse_and_log_det(self, y, **context):
    x = self._bijector.inverse(y, **context)
    return x, self._bijector.inverse_log_det_jacobian(
        y, event_ndims=self._event_ndims, **context)

  def _layer_forward(self, layer, x, context):
    context = context if takes_context(layer) else {}
    return layer.forward(x, **context), layer.forward_log_det_jacobian(
        x, event_ndims=self._event_ndims, **context)

  def _backward(self, layer, y, dy, dlog_det, context, float_context):
    """`(x, dx, gradients)`: the input of `layer` rebuilt from its output `y`,
    its gradient from `dy` and `dlog_det`, and `gradients`, a dict of the
    weights' gradients by `v.ref()` (and `'context'`: a float context's)."""
    if isinstance(layer, ContextChain):
      gradients = {}
      for inner in layer.bijectors:  # The last one applies first.
        y, dy, more = self._backward(inner, y, dy, dlog_det, context,
                                     float_context)
        _accumulate(gradients, more)
      return y, dy, gradients
    if isinstance(layer, FactorOut):
      kept, rest = tf.split(y, 2, axis=-1)
      dkept, drest = tf.split(dy, 2, axis=-1)
      rest, drest, gradients = self._backward(
          layer.bijector, rest, drest, dlog_det, context, float_context)
      return (tf.concat([kept, rest], axis=-1),
              tf.concat([dkept, drest], axis=-1), gradients)
    x = tf.stop_gradient(layer.inverse(
        y, **(context if takes_context(layer) else {})))
    x, = recompute.after_gradients([x], [dy])  # Not the inverse's cache.
    variables = layer.trainable_variables
    sources = [x] + ([float_context] if float_context is not None else [])
    with tf.GradientTape() as tape:
      tape.watch(sources)
      y_again, log_det = self._layer_forward(layer, x, context)
      # A constant log-det (a squeeze's 0) broadcasts over the batch.
      log_det = tf.broadcast_to(log_det, tf.shape(dlog_det))
    grads = tape.gradient(
        [y_again, log_det], sources + list(variables),
        output_gradients=[dy, dlog_det],
        unconnected_gradients=tf.UnconnectedGradients.ZERO)
    gradients = {v.ref(): g for v, g in zip(variables, grads[len(sources):])}
    if float_context is not None:
      gradients['context'] = grads[1]
    return x, grads[0], gradients


def _accumulate(total, more):
  """Adds the gradients of `more` into `total` (dicts by variable ref)."""
  for key, value in more.items():
    total[key] = total[key] + value if key in total else value
