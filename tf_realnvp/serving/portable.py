"""TFLite and ONNX files of a flow, for runtimes without TensorFlow."""

import importlib
import math
import os
import re
import shutil
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from tf_realnvp import training_mode
from tf_realnvp.bijectors.context import CONDITIONAL_INPUT
from tf_realnvp.config.settings import ConfigError
from tf_realnvp.serving.saved_model import ExportedFlow

# Every format `evaluate.py --export_formats` takes; `saved_model` is
# `saved_model.export_saved_model`'s.
FORMATS = ('saved_model', 'tflite', 'onnx')
# The signatures written per portable format: {name: output name}.
PORTABLE_SIGNATURES = {'log_prob': 'log_prob', 'decode': 'x'}
# ONNX opset: 17 runs in onnxruntime >= 1.13 and has every op the traces use.
ONNX_OPSET = 17


class PortableExportError(ConfigError):
  """A flow has an operation that a portable format cannot express."""


def _nan_where_invalid(values, valid):
  """`values` `[batch]` or `[batch, *event]`, NaN in the rows not `valid`."""
  valid = tf.reshape(valid, [-1] + [1] * (values.shape.rank - 1))
  return tf.where(valid, values, tf.constant(np.nan, values.dtype))


def _all_in_row(condition):
  """Whether `condition` `[batch, ...]` holds everywhere in each row."""
  return tf.reduce_all(tf.reshape(condition, [tf.shape(condition)[0], -1]),
                       axis=1)


class PortableFlow(tf.Module):
  """`log_prob` and `decode` of `flow`, traced for conversion.

  The files come from their own trace of the same bijector calls, because
  two constructs of the SavedModel's graph do not convert to ONNX:

  - the couplings' empty-batch `tf.cond` (`Coupling._conditioner_outputs`),
    traced when the batch size is unknown: tf2onnx loses the shapes of the
    convolutions inside it. For ONNX the bijector runs on one example, whose
    batch size is known when tracing (so no cond is traced), vectorized over
    the batch by `tf.vectorized_map`, which turns it back into batched ops
    (one convolution over the whole batch). TFLite keeps the batched trace:
    it converts the cond, and the vectorized one's extra batch axis gives
    some flows slices and transposes of more dimensions than its kernels take;
  - `BroadcastArgs` in the base `tfd.Sample(Normal)`'s `log_prob`, which
    ONNX lacks: the standard Normal's log-density is written out here.

  The traces are made in `training_mode.frozen()`, as the formats store the
  weights as constants: no variable is assigned (Glow's `ActNorm` computes
  with the values it holds) and Glow's 1x1 convolution decodes by a product
  with its inverse, computed when tracing (TFLite has no triangular solve).
  Each trace is saved as a SavedModel in a temporary directory, from which
  TF's `TFLiteConverter` or `tf2onnx` converts one signature at a time. A
  family whose trace has an op a format lacks raises `PortableExportError`
  naming it. Each file is then run in its runtime on a probe batch and must
  give TensorFlow's answer (log_prob within 1e-4 relative, decode within 0.05
  data units), or the export is refused: a converter can be wrong silently.

  The inputs and their checks are those of `exported`, `flow`'s
  `ExportedFlow`; here a failed check gives NaN rows instead of an error.
  `per_example` traces the bijector on one example at a time, for ONNX. The
  module keeps no reference to `exported`: saved with it, every function of
  the SavedModel would be traced too, for nothing.
  """

  def __init__(self, flow, exported, per_example):
    super().__init__(name='portable_flow')
    self.flow = flow
    self._per_example_trace = per_example
    self._context = exported.context
    self.num_levels = exported.num_levels
    self.num_classes = self._context.num_classes if self._context else 0
    self._event_ndims = flow.event_shape.rank
    self._event_size = math.prod(flow.event_shape.as_list())
    self.log_prob = tf.function(
        self._log_prob, input_signature=exported.log_prob.input_signature,
        autograph=False)
    self.decode = tf.function(
        self._decode, input_signature=exported.decode.input_signature,
        autograph=False)

  def signatures(self):
    """`{name: tf.function}` returning `{output name: tensor}`."""
    return {name: tf.function(
        lambda *inputs, f=getattr(self, name), out=output: {out: f(*inputs)},
        input_signature=getattr(self, name).input_signature, autograph=False)
            for name, output in PORTABLE_SIGNATURES.items()}

  def _apply(self, function, inputs):
    """`function(batch, bijector_kwargs)` of the batch `inputs` (`x` or `z`,
    then the context if any).

    With `per_example`, `function` sees a batch of one, whose size is known
    when tracing, so the couplings trace no empty-batch `tf.cond`;
    `tf.vectorized_map` batches every op again (no loop: an op it cannot
    batch is an error when tracing).
    """
    def one(example):
      batch = [value[None] for value in example]
      kwargs = {CONDITIONAL_INPUT: batch[1]} if len(batch) > 1 else {}
      return function(batch[0], kwargs)[0]
    if not self._per_example_trace:
      kwargs = {CONDITIONAL_INPUT: inputs[1]} if len(inputs) > 1 else {}
      return function(inputs[0], kwargs)
    return tf.vectorized_map(one, tuple(inputs), fallback_to_while_loop=False)

  def _valid_context(self, context):
    """Whether each row's label or context vector is valid; all for none."""
    if not context:
      return True
    (value,) = context
    if self._context.num_classes:
      return (value >= 0) & (value < self._context.num_classes)
    return _all_in_row(tf.math.is_finite(value))

  def _log_prob(self, x, *context):
    def log_prob(x, kwargs):
      bijector = self.flow.bijector
      z = bijector.inverse(x, **kwargs)
      # The base tfd.Sample(Normal(0, 1))'s log-density, without its
      # BroadcastArgs.
      axes = list(range(-self._event_ndims, 0))
      base = (-0.5 * tf.reduce_sum(tf.square(z), axes)
              - 0.5 * self._event_size * math.log(2 * math.pi))
      return base + bijector.inverse_log_det_jacobian(
          x, event_ndims=self._event_ndims, **kwargs)
    finite = tf.math.is_finite(x)
    if self.num_levels is not None:
      finite &= (x >= 0) & (x < self.num_levels)
    valid = _all_in_row(finite) & self._valid_context(context)
    return _nan_where_invalid(self._apply(log_prob, (x,) + context),
                              valid)

  def _decode(self, z, *context):
    def decode(z, kwargs):
      return self.flow.bijector.forward(z, **kwargs)
    valid = _all_in_row(tf.math.is_finite(z)) & self._valid_context(context)
    return _nan_where_invalid(self._apply(decode, (z,) + context),
                              valid)


def _tflite(saved_model_dir, signature):
  """The `.tflite` bytes of one signature, TFLite's builtin ops only."""
  converter = tf.lite.TFLiteConverter.from_saved_model(
      saved_model_dir, signature_keys=[signature])
  try:
    return converter.convert()
  except Exception as error:  # pylint: disable=broad-except
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op", str(error))))
    raise PortableExportError(
        f'TFLite cannot express {", ".join(ops) or "an operation"} of this '
        f'flow ({signature}); export it as a SavedModel.') from error


def _log1p(ctx, node, name, args):
  """tf2onnx's handler for `Log1p`, which it lacks (the logit's log-det):
  log(1 + x), exact enough for the log-density of a whole event."""
  del name, args
  one = ctx.make_const(node.name + '/one', np.ones([], np.float32))
  plus_one = ctx.make_node('Add', [node.input[0], one.output[0]])
  ctx.replace_inputs(node, [plus_one.output[0]])
  node.type = 'Log'


def _onnx(saved_model_dir, signature):
  """The serialized ONNX model of one signature, inputs and output named as
  the signature's."""
  import onnx  # pylint: disable=g-import-not-at-top
  import tf2onnx  # pylint: disable=g-import-not-at-top
  from tf2onnx import tf_loader  # pylint: disable=g-import-not-at-top
  try:
    graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
        saved_model_dir, None, None, tag='serve', signatures=[signature],
        return_tensors_to_rename=True)
  except ValueError as error:
    # tf2onnx cannot freeze a tf.while_loop vectorized by tf.vectorized_map
    # (MAF's and IAF's autoregressive pass, FFJORD's ODE solver).
    node = re.search(r'node (\S+)', str(error))
    op = ('While' if node and '/while/' in node.group(1) else
          node.group(1) if node else 'an operation')
    raise PortableExportError(
        f'ONNX cannot express {op} of this flow ({signature}): tf2onnx '
        'cannot freeze it; export it as a SavedModel or TFLite.') from error
  model, _ = tf2onnx.convert.from_graph_def(
      graph_def, name=signature, input_names=inputs, output_names=outputs,
      opset=ONNX_OPSET, custom_op_handlers={'Log1p': (_log1p, [])},
      tensors_to_rename=renames)
  # tf2onnx leaves an op it cannot convert in the graph, as a TF op.
  ops = sorted({node.op_type for node in model.graph.node
                if not onnx.defs.has(node.op_type)})
  if ops:
    raise PortableExportError(
        f'ONNX cannot express {", ".join(ops)} of this flow ({signature}); '
        'export it as a SavedModel or TFLite.')
  return model.SerializeToString()


def _run_tflite(contents, inputs):
  with warnings.catch_warnings():  # Its move to the ai_edge_litert package.
    warnings.simplefilter('ignore', UserWarning)
    interpreter = tf.lite.Interpreter(model_content=contents)
  runner = interpreter.get_signature_runner()
  (output,) = runner(**inputs).values()
  return output


def _run_onnx(contents, inputs):
  import onnxruntime  # pylint: disable=g-import-not-at-top
  session = onnxruntime.InferenceSession(
      contents, providers=['CPUExecutionProvider'])
  return session.run(None, inputs)[0]


_CONVERTERS = {'tflite': _tflite, 'onnx': _onnx}
_RUNTIMES = {'tflite': _run_tflite, 'onnx': _run_onnx}
# The packages each format needs besides TensorFlow (which has TFLite's
# converter and interpreter): ONNX's converter and runtime.
_PACKAGES = {'tflite': (), 'onnx': ('tf2onnx', 'onnx', 'onnxruntime')}
# How far a file's answer to the probe may be from TensorFlow's: relative for
# log_prob, in data units for decode (the tests' tolerances).
_PROBE_TOLERANCE = {'log_prob': dict(rtol=1e-4, atol=0.),
                    'decode': dict(rtol=0., atol=0.05)}


def _probe(module, signature):
  """Valid inputs `{name: array}` of `signature`, a batch of 3."""
  rng = np.random.RandomState(0)
  inputs = {}
  for spec in getattr(module, signature).input_signature:
    shape = [3] + spec.shape.as_list()[1:]
    if spec.name == 'label':
      inputs['label'] = np.arange(3, dtype=np.int32) % module.num_classes
    elif spec.name == 'x' and module.num_levels is not None:
      inputs['x'] = rng.uniform(0., module.num_levels, shape)
    else:
      inputs[spec.name] = rng.normal(0., 1., shape)
    inputs[spec.name] = inputs[spec.name].astype(spec.dtype.as_numpy_dtype)
  return inputs


def _check_in_runtime(fmt, contents, module, exported, signature):
  """Raises `PortableExportError` unless the runtime's answer to a probe
  batch is the SavedModel's function's (`exported`, an `ExportedFlow`): a
  converter can compute something else (TF 2.21's TFLite converter folds
  `tfb.Scale`'s log-det, NICE's last layer, to one entry of its log-scales)
  or emit a kernel the runtime refuses."""
  inputs = _probe(module, signature)
  want = getattr(exported, signature)(*inputs.values()).numpy()
  try:
    got = _RUNTIMES[fmt](contents, inputs)
  except Exception as error:  # pylint: disable=broad-except
    raise PortableExportError(
        f'{fmt}: the runtime refuses this flow\'s {signature}: '
        f'{str(error).splitlines()[0]}; export it as a SavedModel.') from error
  if not np.allclose(got, want, **_PROBE_TOLERANCE[signature]):
    error = np.max(np.abs(got - want))
    raise PortableExportError(
        f'{fmt}: the runtime computes this flow\'s {signature} differently '
        f'from TensorFlow (by up to {error:.3g}); export it as a SavedModel.')


def check_formats(formats):
  """Raises `ConfigError` for a format other than tflite and onnx, or one
  whose packages (`_PACKAGES`) do not import."""
  unknown = sorted(set(formats) - set(_CONVERTERS))
  if unknown:
    raise ConfigError(f'Portable formats are tflite and onnx, got {unknown}.')
  for fmt in formats:
    missing = [name for name in _PACKAGES[fmt] if not _imports(name)]
    if missing:
      raise ConfigError(
          f'{fmt} export needs {", ".join(_PACKAGES[fmt])} (missing: '
          f'{", ".join(missing)}): pip install -e \'.[export]\' in the '
          'checkout, or pip install tf2onnx onnxruntime.')


def _imports(name):
  """Whether the package `name` imports."""
  try:
    importlib.import_module(name)
  except ImportError:
    return False
  return True


def export_portable(flow, export_dir, formats=('tflite', 'onnx')):
  """Writes `export_dir/{log_prob,decode}.{tflite,onnx}`; returns the paths.

      export_portable(flow, export_dir, ['tflite', 'onnx'])
      # export_dir/log_prob.tflite, decode.tflite, log_prob.onnx, decode.onnx

  Each file is one of the SavedModel's signatures (`saved_model.SIGNATURES`)
  with the same named inputs and output, units and dtypes: `log_prob` takes
  `x` `[batch, *event_shape]` (dequantized pixels in `[0, 256)` for images)
  and returns `log_prob` `[batch]`; `decode` takes the latent `z` and returns
  `x`. A conditional flow's files take `label` (int32 `[batch]`) or `context`
  (float `[batch, size]`) as well. The batch dimension is dynamic. Sampling is
  decoding Normal noise: `decode(z)` with `z ~ N(0, temperature^2 I)` drawn
  by the caller, as `ExportedFlow.sample_with_temperature` does inside.
  The files compute as `flow` does: a run trained in mixed precision exports
  its float32 twin (`Experiment.float32_flow`), as `evaluate.py` does.

  Neither runtime can raise from inside a model (the converters drop TF's
  asserts), so the checks `ExportedFlow` makes become NaN: a row of `x` with a
  value outside the density's support or not finite, a label outside
  `[0, num_classes)`, a non-finite context or `z` gets NaN as its result, the
  other rows their values.

  Each file is written to a temporary name and renamed into place, so an
  interrupted export leaves no partial file.

  Raises:
    ConfigError: for a format not in `('tflite', 'onnx')`, or one whose
      packages are not installed (`check_formats`).
    PortableExportError: for a flow with an op a format cannot express.
  """
  check_formats(formats)
  os.makedirs(export_dir, exist_ok=True)
  with training_mode.frozen():
    return _export_frozen(flow, export_dir, formats)


def _export_frozen(flow, export_dir, formats):
  """`export_portable`'s files, traced (and the probe's answers computed) in
  `training_mode.frozen()`: the files store the weights as constants."""
  exported = ExportedFlow(flow)
  paths = {}
  for fmt in formats:
    module = PortableFlow(flow, exported, per_example=fmt == 'onnx')
    traced = tempfile.mkdtemp(prefix='portable-')
    try:
      tf.saved_model.save(module, traced, signatures=module.signatures())
      for signature in PORTABLE_SIGNATURES:
        contents = _CONVERTERS[fmt](traced, signature)
        _check_in_runtime(fmt, contents, module, exported, signature)
        path = os.path.join(export_dir, f'{signature}.{fmt}')
        with open(f'{path}.tmp-{os.getpid()}', 'wb') as f:
          f.write(contents)
        os.replace(f'{path}.tmp-{os.getpid()}', path)
        paths[f'{signature}.{fmt}'] = path
    finally:
      shutil.rmtree(traced, ignore_errors=True)
  return paths
