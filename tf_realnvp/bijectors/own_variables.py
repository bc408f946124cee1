"""A mixin for bijectors that hold variables of their own."""

import tensorflow_probability as tfp


class OwnVariables:
  """A bijector that creates its variables, shared with its copies only.

  TFP copies a bijector (`copy()`, and slicing `b[...]`, which copies) by
  calling its constructor again with `parameters`. Such a bijector's
  constructor takes `variables=None`, creates its variables through
  `_own_variables` and records them there, so that a copy is handed the
  same variables and computes the same map, as a TFP bijector built on a
  `tf.Variable` argument does.

  TFP compares bijectors, and keys its cache, by their constructor
  arguments: two instances built alike (ActNorm of one size, say) would
  share cached results although their variables differ. Mixed in before
  the TFP base class, this makes each instance equal only to itself.
  """

  # The variables are found, and checkpointed, through the attributes that
  # hold them, not again through `parameters`.
  _TF_MODULE_IGNORED_PROPERTIES = (
      tfp.bijectors.Bijector._TF_MODULE_IGNORED_PROPERTIES | {'_parameters'})

  def _own_variables(self, parameters, create):
    """`parameters['variables']`; if `None`, `create()`'s, recorded there.

    Args:
      parameters: the constructor's arguments, as passed to TFP's base.
      create: makes the dict of new variables, `{name: tf.Variable}`.
    """
    if parameters['variables'] is None:
      parameters['variables'] = create()
    return parameters['variables']

  def _get_parameterization(self):
    return id(self)
