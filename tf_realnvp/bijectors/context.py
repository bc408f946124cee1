"""What a conditional flow is conditioned on: class labels or real vectors."""

import dataclasses

import tensorflow as tf
from tensorflow_probability.python.internal import prefer_static as ps

CONDITIONAL_INPUT = 'conditional_input'


@dataclasses.dataclass(frozen=True)
class Context:
  """Class labels in `[0, num_classes)`, or real vectors of length `size`.

  The networks see `features` numbers per example: a label's one-hot vector
  (so a learned linear map of it is a learned embedding of each class) or
  the vector itself. A context broadcasts against the batch of events: one
  label for a whole batch, or one per example.

  A conditional flow models `p(x | c)`: its coupling networks (and, as an
  option, its prior; see `ConditionalPrior`) read a context `c` beside their
  input. The context reaches the layers as TFP's bijectors take theirs
  (`tfb.RealNVP`, `tfb.MaskedAutoregressiveFlow`), the keyword argument
  `conditional_input`:

      flow.log_prob(x, bijector_kwargs={'conditional_input': labels})
      flow.sample(n, bijector_kwargs={'conditional_input': labels})

  and `ContextChain` hands it to every layer that takes it.
  """

  num_classes: int = 0
  size: int = 0

  def __post_init__(self):
    if (self.num_classes > 0) == (self.size > 0) or min(
        self.num_classes, self.size) < 0:
      raise ValueError('A context is either num_classes (class labels) or '
                       'size (real vectors), one of them positive; got '
                       f'num_classes={self.num_classes}, size={self.size}.')

  @property
  def features(self):
    """Numbers per example the networks read."""
    return self.num_classes or self.size

  @property
  def ndims(self):
    """Rank of one example's context: 0 for a label, 1 for a vector."""
    return 0 if self.num_classes else 1

  def batch_and_features(self, events, event_ndims, value, validate_args):
    """The joint batch shape of `events` and the context `value`, and the
    context's features over it, `[prod(batch_shape), features]`.

    Events `[..., *event]` (`event_ndims` axes) and a context broadcast
    against each other's batch shapes: one label for a whole batch, one per
    event, or several for one event.

    Raises:
      ValueError: for no context (`value` is `None`), or see `_features`.
    """
    value = _given(value)
    shape = ps.shape(events)
    context_shape = ps.shape(value)
    batch_shape = ps.broadcast_shape(
        shape[:ps.size(shape) - event_ndims],
        context_shape[:ps.size(context_shape) - self.ndims])
    return batch_shape, self._features(value, batch_shape, events.dtype,
                                       validate_args)

  def _features(self, value, batch_shape, dtype, validate_args):
    """The tensor `value` as features `[prod(batch_shape), features]` of
    `dtype`, broadcast to `batch_shape` first.

    Raises:
      TypeError: for labels that are not integers, or vectors that are not
        floats.
      ValueError: for vectors of another length than `size`.
    """
    if self.num_classes:
      if not value.dtype.is_integer:
        raise TypeError(
            f'{CONDITIONAL_INPUT}: class labels must be integers in '
            f'[0, {self.num_classes}), got dtype {value.dtype.name}.')
      checks = [
          tf.debugging.assert_non_negative(
              value, message=f'{CONDITIONAL_INPUT}: negative class label'),
          tf.debugging.assert_less(
              value, tf.cast(self.num_classes, value.dtype),
              message=f'{CONDITIONAL_INPUT}: class label not below '
              f'num_classes={self.num_classes}')] if validate_args else []
      with tf.control_dependencies(checks):
        features = tf.one_hot(value, self.num_classes, dtype=dtype)
    else:
      if not value.dtype.is_floating:
        raise TypeError(f'{CONDITIONAL_INPUT}: context vectors must be '
                        f'floats, got dtype {value.dtype.name}.')
      if value.shape.rank == 0 or value.shape[-1] not in (None, self.size):
        raise ValueError(
            f'{CONDITIONAL_INPUT}: context vectors must have length '
            f'{self.size} on the last axis, got shape {value.shape}.')
      features = tf.cast(value, dtype)
    features = tf.broadcast_to(
        features, ps.concat([batch_shape, [self.features]], axis=0))
    return tf.reshape(features, [-1, self.features])


def _given(value):
  """`value` as a tensor; a `ValueError` for no context."""
  if value is None:
    raise ValueError(
        'This flow is conditional: pass the context, e.g. flow.log_prob('
        f"x, bijector_kwargs={{'{CONDITIONAL_INPUT}': c}}).")
  return tf.convert_to_tensor(value, name=CONDITIONAL_INPUT)


def takes_context(bijector):
  """Whether `bijector` reads `conditional_input`."""
  return getattr(bijector, 'conditional', False)
