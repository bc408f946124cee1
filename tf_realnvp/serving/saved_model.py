"""The SavedModel of a flow, which runs without this package."""

import math
import os
import shutil

import tensorflow as tf

from tf_realnvp.bijectors.context import CONDITIONAL_INPUT
from tf_realnvp.bijectors.logit import LogitPreprocessing
from tf_realnvp.config import run_dir
from tf_realnvp.flows.flow import context_of

# Values (samples times event size) one sampling call may return.
MAX_SAMPLE_ELEMENTS = 2**20

# Serving signature -> (the `ExportedFlow` function it runs, its output name).
SIGNATURES = {
    'serving_default': ('log_prob', 'log_prob'),
    'log_prob': ('log_prob', 'log_prob'),
    'sample': ('sample', 'samples'),
    'sample_with_temperature': ('sample_with_temperature', 'samples'),
    'encode': ('encode', 'z'),
    'decode': ('decode', 'x'),
}


class ExportedFlow(tf.Module):
  """The functions a SavedModel of `flow` offers, usable live as well.

      m = tf.saved_model.load(export_dir)   # tf_realnvp need not be installed
      m.log_prob(x)                         # [batch, *event_shape] -> [batch]
      m.sample(n)                           # n samples from the flow
      m.sample_with_temperature(n, temperature, seed)  # stateless, reproducible
      m.encode(x)                           # data -> latent z, same shape
      m.decode(z)                           # latent z -> data, same shape
      m.event_shape                         # int32 vector
      m.max_samples                         # int32 scalar: the most n per call

  These return tensors. For `saved_model_cli` and TF Serving the same functions
  are serving signatures, `m.signatures[key](**inputs)`, which take their inputs
  by name and return a dict of named outputs (`SIGNATURES`):

      key                      inputs                       output
      serving_default          x [batch, *event_shape]      log_prob [batch]
      log_prob                 x                            log_prob
      sample                   n                            samples
      sample_with_temperature  n, temperature, seed [2]     samples
      encode                   x                            z
      decode                   z                            x

  `serving_default`, the signature a client gets when it names none, is
  `log_prob`.

  A conditional flow's functions take its context as a last input, named
  `label` for a class-conditional flow (int32: `[batch]` beside `x` or `z`,
  a scalar for `sample` and `sample_with_temperature`, whose `n` samples are
  all of that class) and `context` for one conditioned on vectors (float:
  `[batch, size]`, or `[size]` for sampling); labels must lie in
  `[0, num_classes)`. `m.num_classes` is the number of classes (0 if the flow
  has none).

  The functions check their inputs themselves, with TensorFlow asserts saved
  in the model, and raise `tf.errors.InvalidArgumentError` naming the limit
  rather than return NaN or exhaust memory:

  - `log_prob`, `encode`: an image flow's density is over dequantized 8-bit
    pixels, so every value must lie in `[0, 256)` (`[0, num_levels)`), NaN
    and infinities excluded; the flow's samples (and `decode`'s results) can
    lie a little outside (the logit's support is wider), so clip them to
    `[0, 256)` first. A vector flow takes any finite values. An empty batch
    gives an empty result.
  - `decode`: `z` must be finite.
  - `sample`, `sample_with_temperature`: `0 <= n <= max_samples`, where
    `max_samples = max(1, 2**20 // prod(event_shape))` (`MAX_SAMPLE_ELEMENTS`
    values per call: 341 samples of 32x32x3, 1365 of 16x16x3, 524288 of 2-D
    points); for more, call several times (with other seeds). A bigger `n` is
    refused before anything is allocated. The networks' activations are
    wider than the samples (64 feature maps for 3 channels in the paper's
    CIFAR-10 model): at the bound each is about 90 MB there.
  - `sample_with_temperature`: the temperature must be positive and finite.

  Sampling draws `z ~ N(0, temperature^2 I)` and returns
  `flow.bijector.forward(z)`; with a stateless `seed` the live module and the
  reloaded SavedModel give the same samples. `encode` is
  `flow.bijector.inverse`, `decode` is `flow.bijector.forward`.

  The attributes are `tf.function`s returning a tensor, as Python callers
  want; `signatures()` wraps each in a function returning `{name: tensor}`,
  since a signature of a function returning a bare tensor would name its
  output `output_0`.
  """

  def __init__(self, flow):
    super().__init__(name='exported_flow')
    self.flow = flow
    shape = flow.event_shape.as_list()
    self.event_shape = tf.Variable(shape, dtype=tf.int32, trainable=False,
                                   name="event_shape")
    self._shape = shape
    self._max_samples = max(1, MAX_SAMPLE_ELEMENTS // math.prod(shape))
    self.max_samples = tf.Variable(self._max_samples, dtype=tf.int32,
                                   trainable=False, name='max_samples')
    logits = [m for m in flow.submodules if isinstance(m, LogitPreprocessing)]
    self._num_levels = logits[0].num_levels if logits else None
    events = tf.TensorSpec([None] + shape, flow.dtype, name='x')
    latents = tf.TensorSpec([None] + shape, flow.dtype, name='z')
    count = tf.TensorSpec([], tf.int32, name='n')
    self._context = context_of(flow)
    self.num_classes = tf.Variable(
        self._context.num_classes if self._context else 0, dtype=tf.int32,
        trainable=False, name='num_classes')
    per_event, per_call = self._context_specs(flow.dtype)
    self.log_prob = tf.function(self._log_prob, autograph=False,
                                input_signature=[events] + per_event)
    self.encode = tf.function(self._encode, autograph=False,
                              input_signature=[events] + per_event)
    self.decode = tf.function(self._decode, autograph=False,
                              input_signature=[latents] + per_event)
    self.sample = tf.function(self._sample, autograph=False,
                              input_signature=[count] + per_call)
    self.sample_with_temperature = tf.function(
        self._sample_with_temperature, autograph=False, input_signature=[
            count, tf.TensorSpec([], flow.dtype, name='temperature'),
            tf.TensorSpec([2], tf.int32, name='seed')] + per_call)

  @property
  def context(self):
    """The flow's conditioning (`flows.flow.context_of`), or None."""
    return self._context

  @property
  def num_levels(self):
    """Images: the pixel levels `x` lies below (256); None for vectors."""
    return self._num_levels

  def _context_specs(self, dtype):
    """The context's input specs: `([per event], [per sampling call])`,
    both empty for an unconditional flow."""
    context = self._context
    if context is None:
      return [], []
    if context.num_classes:
      return ([tf.TensorSpec([None], tf.int32, name='label')],
              [tf.TensorSpec([], tf.int32, name='label')])
    return ([tf.TensorSpec([None, context.size], dtype, name='context')],
            [tf.TensorSpec([context.size], dtype, name='context')])

  def _bijector_kwargs(self, context):
    """`{'conditional_input': c}` of a checked context, or `{}`."""
    if not context:
      return {}
    (value,) = context
    if self._context.num_classes:
      message = (f'labels must lie in [0, {self._context.num_classes})')
      checks = [tf.debugging.assert_non_negative(value, message),
                tf.debugging.assert_less(
                    value, self._context.num_classes, message)]
    else:
      checks = [tf.debugging.assert_all_finite(
          value, 'context vectors must be finite')]
    with tf.control_dependencies(checks):
      return {CONDITIONAL_INPUT: tf.identity(value)}

  def signatures(self):
    """`{key: tf.function}` for `tf.saved_model.save`, as `SIGNATURES` says.

    The input names are the `TensorSpec` names (`x`, `z`, `n`,
    `temperature`, `seed`, and `label` or `context`).
    """
    def named(function, output):
      return tf.function(lambda *inputs: {output: function(*inputs)},
                         input_signature=function.input_signature,
                         autograph=False)
    return {key: named(getattr(self, function), output)
            for key, (function, output) in SIGNATURES.items()}

  def _checked_events(self, x, caller):
    """`x`, once it is a valid input of the density (see the module doc)."""
    if self._num_levels is None:
      checks = [tf.debugging.assert_all_finite(
          x, f'{caller}: events must be finite, got NaN or infinity')]
    else:
      message = (f'{caller}: pixel values must lie in [0, '
                 f'{self._num_levels}) (dequantized intensities; clip '
                 'samples to it), without NaN')
      checks = [
          tf.debugging.assert_greater_equal(x, tf.zeros([], x.dtype), message),
          tf.debugging.assert_less(
              x, tf.constant(self._num_levels, x.dtype), message)]
    with tf.control_dependencies(checks):
      return tf.identity(x)

  def _log_prob(self, x, *context):
    return self.flow.log_prob(self._checked_events(x, 'log_prob'),
                              bijector_kwargs=self._bijector_kwargs(context))

  def _encode(self, x, *context):
    return self.flow.bijector.inverse(self._checked_events(x, 'encode'),
                                      **self._bijector_kwargs(context))

  def _decode(self, z, *context):
    check = tf.debugging.assert_all_finite(
        z, 'decode: latents z must be finite, got NaN or infinity')
    with tf.control_dependencies([check]):
      return self.flow.bijector.forward(tf.identity(z),
                                        **self._bijector_kwargs(context))

  def _noise_shape(self, n):
    """`[n, *event_shape]`, once `n` is checked: before anything is drawn."""
    checks = [
        tf.debugging.assert_non_negative(
            n, 'the number of samples n must be at least 0'),
        tf.debugging.assert_less_equal(
            n, self._max_samples,
            f'the number of samples n must be at most {self._max_samples} '
            f'per call ({MAX_SAMPLE_ELEMENTS} values of events of shape '
            f'{self._shape}); call several times for more')]
    with tf.control_dependencies(checks):
      return tf.concat([[n], self._shape], 0)

  def _sample(self, n, *context):
    z = tf.random.normal(self._noise_shape(n), dtype=self.flow.dtype)
    return self.flow.bijector.forward(z, **self._bijector_kwargs(context))

  def _sample_with_temperature(self, n, temperature, seed, *context):
    message = ('temperature must be positive and finite (1 samples the '
               'flow, below 1 trades diversity for quality)')
    checks = [tf.debugging.assert_all_finite(temperature, message),
              tf.debugging.assert_positive(temperature, message)]
    with tf.control_dependencies(checks):
      z = tf.random.stateless_normal(
          self._noise_shape(n), seed, dtype=self.flow.dtype)
    return self.flow.bijector.forward(z * temperature,
                                      **self._bijector_kwargs(context))


def export_saved_model(flow, export_dir):
  """Writes a SavedModel of `flow` to `export_dir`, atomically; returns it.

  The model is written to a temporary sibling directory and renamed into
  place only once complete, so an interrupted export never leaves a partial
  `export_dir`; a previous export stays until the new one is complete.
  Temporary siblings that a killed export left behind are removed first
  (see `run_dir.remove_stale_siblings`): `export_dir.tmp-PID` and
  `export_dir.old-PID` of a process that no longer runs. A directory of a
  live process is left alone; this assumes that the processes exporting to
  one directory run on one machine, whose PIDs the names hold.
  """
  export_dir = os.path.abspath(export_dir)
  run_dir.remove_stale_siblings(export_dir)
  tmp_dir = f'{export_dir}.tmp-{os.getpid()}'
  old_dir = f'{export_dir}.old-{os.getpid()}'
  module = ExportedFlow(flow)
  try:
    tf.saved_model.save(module, tmp_dir, signatures=module.signatures())
    if os.path.exists(export_dir):
      os.rename(export_dir, old_dir)
    os.rename(tmp_dir, export_dir)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    shutil.rmtree(old_dir, ignore_errors=True)
  return export_dir


