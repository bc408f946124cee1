"""SavedModel export of a flow that runs without this package.

    m = tf.saved_model.load(export_dir)   # tf_realnvp need not be installed
    m.log_prob(x)                         # [batch, *event_shape] -> [batch]
    m.sample(n)                           # n samples from the flow
    m.sample_with_temperature(n, temperature, seed)  # stateless, reproducible
    m.event_shape                         # int32 vector

The same functions are the serving signatures `log_prob`, `sample` and
`sample_with_temperature` (for `saved_model_cli` and TF Serving).
"""

import os
import shutil

import tensorflow as tf


class ExportedFlow(tf.Module):
  """The functions a SavedModel of `flow` offers, usable live as well.

  Sampling draws `z ~ N(0, temperature^2 I)` and returns
  `flow.bijector.forward(z)`; with a stateless `seed` the live module and the
  reloaded SavedModel give the same samples.
  """

  def __init__(self, flow):
    super().__init__(name='exported_flow')
    self.flow = flow
    shape = flow.event_shape.as_list()
    self.event_shape = tf.Variable(shape, dtype=tf.int32, trainable=False,
                                   name="event_shape")
    self._shape = shape
    events = tf.TensorSpec([None] + shape, flow.dtype, name='x')
    count = tf.TensorSpec([], tf.int32, name='n')
    self.log_prob = tf.function(self._log_prob, input_signature=[events])
    self.sample = tf.function(self._sample, input_signature=[count])
    self.sample_with_temperature = tf.function(
        self._sample_with_temperature, input_signature=[
            count, tf.TensorSpec([], flow.dtype, name='temperature'),
            tf.TensorSpec([2], tf.int32, name='seed')])

  def _log_prob(self, x):
    return self.flow.log_prob(x)

  def _sample(self, n):
    z = tf.random.normal(tf.concat([[n], self._shape], 0), dtype=self.flow.dtype)
    return self.flow.bijector.forward(z)

  def _sample_with_temperature(self, n, temperature, seed):
    z = tf.random.stateless_normal(
        tf.concat([[n], self._shape], 0), seed, dtype=self.flow.dtype)
    return self.flow.bijector.forward(z * temperature)


def export_saved_model(flow, export_dir):
  """Writes a SavedModel of `flow` to `export_dir`, atomically; returns it.

  The model is written to a temporary sibling directory and renamed into
  place only once complete, so an interrupted export never leaves a partial
  `export_dir`; a previous export stays until the new one is complete.
  """
  export_dir = os.path.abspath(export_dir)
  tmp_dir = f'{export_dir}.tmp-{os.getpid()}'
  old_dir = f'{export_dir}.old-{os.getpid()}'
  module = ExportedFlow(flow)
  try:
    tf.saved_model.save(module, tmp_dir, signatures={
        'log_prob': module.log_prob,
        'sample': module.sample,
        'sample_with_temperature': module.sample_with_temperature})
    if os.path.exists(export_dir):
      os.rename(export_dir, old_dir)
    os.rename(tmp_dir, export_dir)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    shutil.rmtree(old_dir, ignore_errors=True)
  return export_dir
