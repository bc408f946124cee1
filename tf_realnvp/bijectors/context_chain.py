"""A chain of bijectors that hands a flow's context to the layers that read it."""

import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp.bijectors.context import CONDITIONAL_INPUT
from tf_realnvp.bijectors.context import takes_context


class ContextChain(tfp.bijectors.Composition):
  """`tfb.Chain` (the last bijector in the list applies first) with a context.

  TFP's `Chain` routes keyword arguments by bijector name
  (`chain.forward(x, coupling={'conditional_input': c})`) and drops every
  other key without a word, so `flow.log_prob(x, bijector_kwargs=
  {'conditional_input': c})` would return the unconditional density. Here
  the one keyword a flow takes, `conditional_input`, goes to every layer
  that reads it (`takes_context`), nested chains included, and the chain
  checks the call:

  * an unconditional chain refuses `conditional_input`;
  * any other keyword argument raises;
  * a conditional layer called without a context raises (TFP's own walks
    over the chain, for shapes and dtypes, pass none).
  """

  def __init__(self, bijectors, validate_args=False, name='chain'):
    parameters = dict(locals())
    self._conditional = any(takes_context(b) for b in bijectors)
    with tf.name_scope(name) as name:
      super().__init__(
          bijectors=list(bijectors), validate_args=validate_args,
          parameters=parameters, name=name)

  @property
  def conditional(self):
    """Whether some layer reads `conditional_input`."""
    return self._conditional

  def _context(self, kwargs):
    """`{'conditional_input': c}` of a conditional chain's call, else `{}`."""
    unknown = sorted(set(kwargs) - {CONDITIONAL_INPUT})
    if unknown:
      raise ValueError(
          f'{self.name}: unknown keyword argument(s) {unknown}; a flow takes '
          f'only {CONDITIONAL_INPUT} (through bijector_kwargs), and only if it '
          'is conditional.')
    given = kwargs.get(CONDITIONAL_INPUT) is not None
    if given and not self._conditional:
      raise ValueError(
          f'{self.name}: this flow is not conditional; drop '
          f'{CONDITIONAL_INPUT}, or build the flow with num_classes or '
          'context_size.')
    return kwargs

  def _walk_forward(self, step_fn, x, **kwargs):
    context = self._context(kwargs)
    for bijector in reversed(self.bijectors):
      x = step_fn(bijector, x,
                  **(context if takes_context(bijector) else {}))
    return x

  def _walk_inverse(self, step_fn, y, **kwargs):
    context = self._context(kwargs)
    for bijector in self.bijectors:
      y = step_fn(bijector, y,
                  **(context if takes_context(bijector) else {}))
    return y
