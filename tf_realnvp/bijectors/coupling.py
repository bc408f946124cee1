"""What every masked coupling layer shares (Dinh et al., 2017, Sec. 3.3-3.4)."""

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import prefer_static as ps

from tf_realnvp import recompute
from tf_realnvp.bijectors.one_pass import OnePassBijector


class Coupling(OnePassBijector):
  """Base of the coupling layers `y = b*x + (1-b)*g(x; net(b*x))`.

  With a binary mask `b` (see `masks.py`), the entries where `b = 1` pass
  unchanged and parameterize, through the conditioner `net`, an invertible
  element-wise map `g` of the others. The Jacobian is triangular once the
  kept entries come first, so the log-det is the sum over the transformed
  entries of `log g'`. Subclasses say what `g` is (`AffineCoupling`,
  `SplineCoupling`) and what the conditioner returns for it.

  The conditioner is a Keras layer or a `tf.Module` mapping a batch
  `[N, *event_shape]` of masked events to the map's parameters, tensors
  `[N, *event_shape, *trailing]` (subclasses: `_coupling_parameters` and
  `_coupling_parameter_shapes`); inputs of any batch shape
  reach it flattened to one batch axis, and an empty batch does not reach it
  (see `_conditioner_outputs`). Its outputs are cast to the input dtype, so a
  conditioner may compute in bfloat16 while the coupling arithmetic and the
  log-det stay in float32.

  A conditional coupling (`context`, see `tf_realnvp.bijectors.context`)
  computes its parameters from a context `c` as well, passed as
  `conditional_input`; the Jacobian stays triangular, the log-det the same
  sum. The conditioner is then called as `conditioner(b*x, context=features)`
  with the context's features `[N, context.features]`.
  """

  def __init__(self, mask, conditioner, context, is_constant_jacobian,
               recompute_network, validate_args, parameters, name):
    """Builds the coupling.

    Args:
      mask: array of 0/1 of the event's shape; 1 marks entries kept unchanged.
      conditioner: a Keras layer (built here on a batch of one so its
        variables exist and are tracked) or a `tf.Module` (whose
        `tf.Variable`s TF tracks).
      context: a `Context` for a conditional coupling, else `None`.
      is_constant_jacobian: whether the log-det does not depend on the input.
      recompute_network: whether the backward pass runs the conditioner
        again instead of keeping its activations (`tf_realnvp.recompute`).
      validate_args: Python `bool`, whether to check inputs at run time.
      parameters: the subclass's constructor arguments (TFP's `parameters`).
      name: name of the bijector.
    """
    mask = np.asarray(mask, dtype=np.float32)
    if not np.all((mask == 0) | (mask == 1)):
      raise ValueError('mask must hold only 0 and 1.')
    self._event_shape = tf.TensorShape(mask.shape)
    self._mask = mask
    self._context = context
    self._recompute_network = recompute_network
    with tf.name_scope(name) as scope:
      if hasattr(conditioner, 'built') and not conditioner.built:
        dtype = getattr(conditioner, 'compute_dtype', 'float32')
        conditioner(tf.zeros((1,) + mask.shape, dtype), **(
            {} if context is None else
            dict(context=tf.zeros((1, context.features), dtype))))
      if isinstance(conditioner, keras.layers.Layer):
        # Keras 3 variables are invisible to `tf.Module` discovery; track
        # their underlying `tf.Variable`s here and keep the layer itself out
        # of checkpoints so every weight is saved once.
        self._conditioner = self._no_dependency(conditioner)
        self._conditioner_variables = tuple(
            getattr(v, 'value', v) for v in conditioner.weights)
      elif isinstance(conditioner, tf.Module):
        self._conditioner = conditioner
      else:
        raise TypeError(
            f'{name}: the conditioner must be a keras.layers.Layer or a '
            f'tf.Module, so that its weights are trained and saved; got '
            f'{type(conditioner).__name__}. Wrap the function in a Keras '
            'layer.')
      super().__init__(
          forward_min_event_ndims=mask.ndim,
          is_constant_jacobian=is_constant_jacobian,
          validate_args=validate_args,
          parameters=parameters,
          name=scope)

  @property
  def mask(self):
    return self._mask

  @property
  def conditioner(self):
    return self._conditioner

  @property
  def context(self):
    """The `Context` the layer reads, or `None`."""
    return self._context

  @property
  def conditional(self):
    """Whether the coupling reads `conditional_input`."""
    return self._context is not None

  def _coupling_parameters(self, outputs):
    """The list of parameter tensors in the conditioner's `outputs`; raises
    if they are not what the map needs."""
    raise NotImplementedError

  @property
  def _coupling_parameter_shapes(self):
    """The trailing shape of each parameter, after `[N, *event]`."""
    raise NotImplementedError

  def _conditioner_outputs(self, kept, dtype, conditional_input=None):
    """The map's parameters for the kept entries `kept = b*x`.

    Parameter `i` has the shape `[*batch, *event, *shapes[i]]`, `shapes` the
    subclass's `_coupling_parameter_shapes`, and `dtype`. The conditioner
    sees a batch with exactly one batch axis (a Keras convolution needs
    `[N, H, W, C]`): any batch shape of `kept`, none included, is flattened
    into it and restored on the outputs. A context and the events broadcast
    against each other's batch shapes.

    An empty batch never reaches the conditioner: its outputs are empty too.
    TF 2.21's oneDNN convolution (float32, bfloat16) hands back an empty
    input unchanged, with the input's channel count instead of the filters'
    (the next bias add then fails), and batch normalization in training mode
    would take statistics of no examples. Whether the batch is empty is
    decided when tracing if its size is known then (a training step with a
    fixed batch size: no added op); otherwise by a `tf.cond`, which Grappler
    lowers to a switch that keeps the convolutions' fusions. (There, under
    several replicas, a replica with an empty share would skip the
    all-reduce of synchronized batch normalization in training mode; the
    trainer's training batches have a fixed size.)
    """
    event = self._event_shape.as_list()
    batch_shape = ps.shape(kept)[:-len(event)]
    context = None
    if self._context is not None:
      batch_shape, context = self._context.batch_and_features(
          kept, len(event), conditional_input, self.validate_args)
      kept = tf.broadcast_to(kept, ps.concat([batch_shape, event], axis=0))
    flat = tf.reshape(kept, [-1] + event)

    def network(flat, *context):
      outputs = self._conditioner(flat, **(
          dict(context=context[0]) if context else {}))
      return [tf.cast(output, dtype)
              for output in self._coupling_parameters(outputs)]

    def run():
      inputs = [flat] + ([] if context is None else [context])
      if self._recompute_network:
        return recompute.recomputed(network, *inputs)
      return network(*inputs)

    def nothing():
      return [tf.zeros([0] + event + list(trailing), dtype)
              for trailing in self._coupling_parameter_shapes]

    size = flat.shape[0]
    if size is None:
      outputs = tf.cond(tf.shape(flat)[0] > 0, run, nothing)
    else:
      outputs = run() if size else nothing()
    return [tf.reshape(output, ps.concat(
        [batch_shape, np.array(event + list(trailing), np.int32)], axis=0))
            for output, trailing in zip(outputs,
                                        self._coupling_parameter_shapes)]

  def _check_event_shape(self, x):
    ndims = self._event_shape.rank
    if x.shape.rank is not None and (
        x.shape.rank < ndims
        or not self._event_shape.is_compatible_with(x.shape[-ndims:])):
      raise ValueError(
          f'{self.name}: expected events of shape {self._event_shape} '
          f'(rank {ndims}) at the end of the input shape, got {x.shape}.')

  def _sum_event(self, values):
    """The sum of `values` (per entry) over the event's axes."""
    return tf.reduce_sum(
        values, axis=list(range(-self._event_shape.rank, 0)))
