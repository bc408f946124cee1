"""Flows as Keras models: `FlowModel` (`compile`, `fit`, `evaluate`, `save`)."""

import json

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_realnvp import flows
from tf_realnvp import training_mode
from tf_realnvp.bijectors.actnorm import initialize_actnorms
from tf_realnvp.flows import objective
from tf_realnvp.flows.flow import context_of
from tf_realnvp.flows.flow import couplings
from tf_realnvp.flows.flow import log_prob

# The paper's coefficient of the L2 penalty on the weight-normalization gains
# (Dinh et al. 2017, Sec. 4.1).
PAPER_L2 = 5e-5


@keras.saving.register_keras_serializable(package='tf_realnvp')
class FlowModel(keras.Model):
  """A flow as a `keras.Model` trained by maximum likelihood.

      model = tf_realnvp.FlowModel(kind='realnvp', event_shape=(28, 28, 1),
                                   settings=dict(num_res_blocks=2))
      model.compile(optimizer=keras.optimizers.Adam(1e-3))
      model.fit(images, epochs=5)          # metrics: loss, bits_per_dim
      model.save('flow.keras')             # keras.models.load_model reads it

  `fit` minimizes `tf_realnvp.loss` (the negative log-likelihood
  per dimension plus `l2` times the squared weight-normalization gains) in
  `tf_realnvp.training_mode.training()`; `evaluate` computes it in
  evaluation mode.
  Both report `loss` (the objective) and the negative log-likelihood without
  the penalty: `bits_per_dim` for images (`objective.nats_to_bits_per_dim`),
  `nll_nats` (nats per event) for vectors. `model(x)` is `flow.log_prob(x)`.

  Two ways to build one:

  - `FlowModel(kind='glow', event_shape=(2,), settings=dict(num_layers=4))`
    builds `tf_realnvp.make_flow(kind, event_shape, **settings)`. Keras can
    rebuild it from these settings, so `model.save('m.keras')` and
    `keras.models.load_model('m.keras')` work.
  - `FlowModel(flow)` wraps a flow you built. `save_weights` and
    `load_weights` (into a `FlowModel` of a flow built alike) work; saving a
    `.keras` file raises, since Keras could not rebuild the flow.

  Build the model inside `strategy.scope()` to train under a `tf.distribute`
  strategy (with `FlowModel(flow)`, build the flow there too). Glow's
  `ActNorm` layers are initialized on the first batch `fit` or `evaluate` is
  given (a `tf.data.Dataset`'s first element, or the first `batch_size`
  events of an array), across replicas; see `initialize`.

  Keras 3 sees only the `keras.Variable`s assigned to its layers. A flow is a
  `tfd.TransformedDistribution`, a `tf.Module`: a Keras model that merely holds
  one as an attribute has no weights, and `fit` trains nothing (Keras only
  warns). Most of a flow's state is plain `tf.Variable`s no Keras layer owns:
  Glow's `ActNorm` and 1x1 convolutions, NICE's diagonal scaling, the
  `BatchNorm` bijector's running averages, and the `tf_keras` (Keras 2)
  networks of MAF, IAF and FFJORD. `FlowModel` therefore takes every variable
  the flow has (`flow.variables`, which `tf.Module` finds in all of them, the
  couplings' Keras 3 conditioners included) and hands Keras one
  `keras.Variable` per variable: the conditioners' own `keras.Variable`s, and
  for every other one a `keras.Variable` over the same `tf.Variable` (Keras's
  TensorFlow backend keeps a `tf.Variable` it is given as its value, no copy).
  The flow computes with its variables as before; Keras's optimizer, `weights`,
  `save_weights` and `.keras` files see and update the very same storage,
  trainable and non-trainable alike, under a `tf.distribute` strategy too.

  To hold a flow in a Keras model of your own, hold a `FlowModel` of it: as a
  Keras layer it brings its weights along.

  Args:
    flow: a flow (`tfd.Distribution` built on `tf.Variable`s), or `None` with
      `kind`.
    kind: a kind of `tf_realnvp.flows.FLOWS`, instead of `flow`.
    event_shape: with `kind`: `(D,)` or `(H, W, C)`.
    settings: with `kind`: the keyword settings of `make_flow`.
    l2: coefficient of the L2 penalty; the paper's 5e-5 by default.
    **kwargs: `keras.Model`'s arguments (`name`, ...). The model computes in
      the flow's dtype; a network's precision is a flow setting
      (`network_dtype`).

  Raises:
    ValueError: for both or neither of `flow` and `kind`; for a flow whose
      variables were created under another `tf.distribute` strategy than the
      one in scope; for a flow holding a Keras layer whose variables
      `flow.variables` does not list (Keras would not see them).
  """

  def __init__(self, flow=None, *, kind=None, event_shape=None, settings=None,
               l2=PAPER_L2, **kwargs):
    if (flow is None) == (kind is None):
      raise ValueError(
          'Give FlowModel either a flow, FlowModel(flow), or the settings '
          "to build one, FlowModel(kind='realnvp', event_shape=(2,), "
          'settings={...}); got '
          f'{"both" if flow is not None else "neither"}.')
    if 'dtype' in kwargs:
      raise ValueError(
          'FlowModel computes in its flow\'s dtype; set `dtype` (and the '
          'networks\' `network_dtype`) in the flow\'s settings instead of '
          f'dtype={kwargs["dtype"]!r}.')
    if flow is None:
      if event_shape is None:
        raise ValueError('FlowModel(kind=...) needs an event_shape, (D,) for '
                         'vectors or (H, W, C) for images.')
      settings = _serializable(dict(settings or {}))
      event_shape = [int(d) for d in event_shape]
      flow = flows.make_flow(kind, event_shape, **settings)
      self_settings = dict(kind=kind, event_shape=event_shape,
                           settings=settings)
    else:
      self_settings = None
    super().__init__(dtype=flow.dtype.name, **kwargs)
    self._flow_settings = self_settings
    self.flow = flow
    self.l2 = float(l2)
    self._images = len(flow.event_shape) == 3
    self._context = context_of(flow)
    # Tracked by Keras: one `keras.Variable` per variable of the flow.
    self._flow_weights = _keras_variables(flow)
    # TFP's ODE solver keeps lists of unknown length, which XLA refuses; Keras
    # would XLA-compile the steps on a GPU by default (`jit_compile='auto'`).
    self.supports_jit = not any(isinstance(module, tfp.bijectors.FFJORD)
                                for module in flow.submodules)
    self.loss_tracker = keras.metrics.Mean(name='loss')
    self.nll_tracker = keras.metrics.Mean(
        name='bits_per_dim' if self._images else 'nll_nats')
    self.built = True  # Every variable exists: nothing to build on data.

  @property
  def metrics(self):
    return [self.loss_tracker, self.nll_tracker]

  def call(self, inputs):
    """`flow.log_prob(x)`: the log-density of each event, in nats; for a
    conditional flow `inputs` is `(x, context)`, giving `log p(x | c)`."""
    return log_prob(self.flow, *self._events_and_context(
        inputs if self._context else (inputs,)))

  def initialize(self, x, context=None):
    """Initializes Glow's `ActNorm` layers on the batch `x`, once.

    (`context`: a conditional flow's context of the batch.)

    `ActNorm` takes its statistics from the first batch it sees. Inside a
    distributed step each replica would see only its share and could not
    assign a mirrored variable, so `fit` and `evaluate` call this first on a
    whole batch in cross-replica context. Does nothing for a flow without
    `ActNorm`, or once its layers are initialized (or restored).
    """
    with self.distribute_strategy.scope():
      initialize_actnorms(self.flow, lambda: log_prob(
          self.flow, tf.cast(x, self.flow.dtype), context))

  def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
    if not self.trainable_weights:
      raise ValueError(
          f'{self.name} has no trainable weights: its flow has no trainable '
          'variables, so fit would change nothing.')
    self._initialize_from(x, y, batch_size)
    if self.optimizer is not None and not self.optimizer.built:
      # Here, not where Keras would without a strategy, inside the traced
      # step: variables created there make TensorFlow trace the step twice
      # (27 s against 12 s for the first `fit` of a small image flow).
      with self.distribute_strategy.scope():
        self.optimizer.build(self.trainable_variables)
    return super().fit(x, y, batch_size, *args, **kwargs)

  def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
    self._initialize_from(x, y, batch_size)
    return super().evaluate(x, y, batch_size, *args, **kwargs)

  def save(self, filepath, *args, **kwargs):
    self.get_config()  # Raises for `FlowModel(flow)` before Keras opens a file.
    return super().save(filepath, *args, **kwargs)

  def train_step(self, data):
    x, context = self._events_and_context(data)
    with tf.GradientTape() as tape:
      with training_mode.training():
        loss, mean_nll = objective.loss(self.flow, x, self.l2, context)
      # Keras's optimizer sums the replicas' gradients.
      replicas = tf.distribute.get_strategy().num_replicas_in_sync
      scaled = self.optimizer.scale_loss(loss / replicas)
    weights = self.trainable_weights
    self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights),
                                       weights))
    return self._update_metrics(x, loss, mean_nll)

  def test_step(self, data):
    x, context = self._events_and_context(data)
    loss, mean_nll = objective.loss(self.flow, x, self.l2, context)
    return self._update_metrics(x, loss, mean_nll)

  def get_config(self):
    if self._flow_settings is None:
      raise ValueError(
          f'{self.name} wraps a flow object, FlowModel(flow), which Keras '
          'cannot rebuild from a .keras file. Build it from settings, '
          "FlowModel(kind='realnvp', event_shape=..., settings={...}), to "
          'save it whole, or save its weights: model.save_weights('
          "'m.weights.h5') and load_weights into a FlowModel of a flow built "
          'alike.')
    return dict(name=self.name, trainable=self.trainable, l2=self.l2,
                **self._flow_settings)

  def _update_metrics(self, x, loss, mean_nll):
    events = tf.cast(tf.shape(x)[0], loss.dtype)
    self.loss_tracker.update_state(loss, sample_weight=events)
    if self._images:
      mean_nll = objective.nats_to_bits_per_dim(
          mean_nll, self.flow.event_shape.as_list())
    self.nll_tracker.update_state(mean_nll, sample_weight=events)
    return {metric.name: metric.result() for metric in self.metrics}

  def _events_and_context(self, data):
    """`(x, context)` of a batch `x`, `(x,)`, `(x, y)` or `(x, y,
    sample_weight)`: the events in the flow's dtype (Keras hands arrays over
    as float32, pixels may be integers) and, for a conditional flow, `y` as
    its context (else `None`; an unconditional flow ignores `y`)."""
    x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
    if self._context and y is None:
      raise ValueError(
          f'{self.name}: the flow is conditional; give fit/evaluate (x, y) '
          'batches, y its context (class labels or vectors).')
    return tf.cast(x, self.flow.dtype), (y if self._context else None)

  def _initialize_from(self, x, y, batch_size):
    """`initialize` on the first batch of `fit`'s or `evaluate`'s data."""
    if isinstance(x, tf.data.Dataset):
      batch = next(iter(x))
    elif x is None or not hasattr(x, 'shape'):
      return  # A generator or PyDataset: nothing to peek at without using it.
    else:
      size = batch_size or 32
      batch = (x[:size],) if y is None else (x[:size], y[:size])
    self.initialize(*self._events_and_context(batch))


def _keras_variables(flow):
  """A `keras.Variable` for every variable of `flow`, in `flow.variables`'s
  order (by attribute name, the same for every flow built alike).

  The couplings' conditioners are Keras 3 layers: their own variables are
  returned. Every other `tf.Variable` (bijectors' own, `tf_keras` networks')
  gets a `keras.Variable` whose value is that very `tf.Variable`, with its
  trainability and constraint: `tf_keras` layers keep constraints such as
  MADE's autoregressive masks on the variable, and Keras's optimizers apply
  a variable's constraint after every update.
  """
  existing = {}
  for layer in couplings(flow):
    for weight in getattr(layer.conditioner, 'weights', ()):
      existing[id(weight.value)] = weight
  strategy = tf.distribute.get_strategy()
  in_scope = tf.distribute.has_strategy()
  result = []
  for variable in flow.variables:
    distributed = isinstance(variable, tf.distribute.DistributedValues)
    if (in_scope and not strategy.extended.variable_created_in_scope(variable)
        or distributed and not in_scope):
      raise ValueError(
          f'The variable {variable.name} of {flow.name} was created under '
          'another tf.distribute strategy than the one in scope now. Build '
          'the flow and the FlowModel inside the same strategy.scope().')
    if id(variable) in existing:
      result.append(existing.pop(id(variable)))
      continue
    wrapper = keras.Variable(
        variable, dtype=variable.dtype.name, trainable=variable.trainable,
        autocast=False, name=_keras_name(variable),
        aggregation=_AGGREGATION[variable.aggregation],
        synchronization=_SYNCHRONIZATION[variable.synchronization])
    if wrapper.value is not variable:
      raise AssertionError(  # Keras copied it: training would be lost.
          f'keras.Variable did not keep {variable.name} as its value.')
    wrapper.constraint = getattr(variable, 'constraint', None)
    result.append(wrapper)
  missing = _untracked_keras_layers(flow, result)
  if existing or missing:
    raise ValueError(
        f'{flow.name} holds Keras layers whose variables flow.variables does '
        f'not list ({", ".join(missing) or "a conditioner"}), so Keras could '
        'not train them: expose them to tf.Module as the couplings do '
        '(`_conditioner_variables`).')
  return result


def _untracked_keras_layers(flow, weights):
  """Names of the Keras 3 layers held by `flow`'s modules with a variable
  not among `weights`."""
  values = {id(w.value) for w in weights}
  missing = []
  for module in [flow] + list(flow.submodules):
    for attribute in vars(module).values():
      if (isinstance(attribute, keras.layers.Layer)
          and any(id(w.value) not in values for w in attribute.weights)):
        missing.append(attribute.name)
  return missing


def _keras_name(variable):
  """`'glow/act_norm/loc:0'` as `'glow.act_norm.loc'`: Keras refuses '/'."""
  return variable.name.split(':')[0].replace('/', '.')


_AGGREGATION = {
    tf.VariableAggregation.NONE: 'none',
    tf.VariableAggregation.SUM: 'sum',
    tf.VariableAggregation.MEAN: 'mean',
    tf.VariableAggregation.ONLY_FIRST_REPLICA: 'only_first_replica',
}
_SYNCHRONIZATION = {
    tf.VariableSynchronization.AUTO: 'auto',
    tf.VariableSynchronization.NONE: 'none',
    tf.VariableSynchronization.ON_WRITE: 'on_write',
    tf.VariableSynchronization.ON_READ: 'on_read',
}


def _serializable(settings):
  """`settings` with dtypes as names and tuples as lists, as JSON keeps them."""
  def convert(value):
    if isinstance(value, tf.dtypes.DType):
      return value.name
    if isinstance(value, keras.DTypePolicy):
      return value.name
    if isinstance(value, np.generic):
      return value.item()
    if isinstance(value, (tuple, list)):
      return [convert(v) for v in value]
    if isinstance(value, dict):
      return {k: convert(v) for k, v in value.items()}
    return value
  settings = convert(settings)
  try:
    json.dumps(settings)
  except TypeError as error:
    raise ValueError(
        f'FlowModel settings must be plain values (numbers, strings, lists, '
        f'dicts) so a .keras file can hold them: {error}') from None
  return settings
