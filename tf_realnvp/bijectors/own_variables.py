"""A mixin for bijectors that hold variables of their own."""


class OwnVariables:
  """A bijector with variables of its own equals only itself.

  TFP compares bijectors, and keys its cache, by their constructor
  arguments: two instances built alike (ActNorm of one size, say) would
  share cached results although their variables differ. Mixed in before
  the TFP base class, this makes each instance equal only to itself.
  """

  def _get_parameterization(self):
    return id(self)
