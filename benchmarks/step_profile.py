r"""Where a training step's time goes: op time by kind, in each precision.

    python -m benchmarks.step_profile --model=cifar10 \
        --precisions=float32,mixed_bfloat16

Builds the benchmark's RealNVP (`benchmarks.models`) and its train step (one
`FusedAdam` step on `-mean log p(x) + L2`, no XLA), runs `--steps` steps
under TensorFlow's profiler and sums the time of every TensorFlow op the
trace records, grouped into kinds (`KINDS`). Convolutions are split by the
precision they run in under `mixed_bfloat16`: those of the residual blocks
compute in bfloat16; the stem, the 1x1 skips and the head in float32 (see
`tf_realnvp.networks`). Ops of the weight normalization (`w = g v / ||v||`
and its gradient) are counted apart from other elementwise work, and the
optimizer's ops (the fused Adam kernels and their scalar bookkeeping)
apart from both.

By default the ops run one at a time (`--inter_op_threads=1`), each on all
cores (TensorFlow's intra-op pool), so that an op's time is its own and not
inflated by another running beside it: the op times then add up to the
step's, and what is left (`between ops`) is the executor's own time. Writes
`step_profile.json` and `.md` to `--out_dir`.
"""

import collections
import glob
import json
import os
import re
import tempfile
import time

from absl import app
from absl import flags
import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from benchmarks import hardware
from benchmarks import models
from tf_realnvp.training import optimizers

FLAGS = flags.FLAGS
flags.DEFINE_string('model', 'cifar10',
                    'Architecture, from models.ARCHITECTURES.')
flags.DEFINE_list('precisions', list(models.PRECISIONS),
                  'Precisions to profile.')
flags.DEFINE_integer('image_size', 32, 'Side of the square RGB images.')
flags.DEFINE_integer('batch_size', 16, 'Images per train step.')
flags.DEFINE_integer('steps', 5, 'Profiled steps (after two warm-up steps).')
flags.DEFINE_integer('inter_op_threads', 1,
                     'Ops run at once (0: TensorFlow\'s default, which lets '
                     'op times overlap).')
flags.DEFINE_string('out_dir', 'step_profile_results', 'Where to write.')

# Kinds in the order the report lists them; `kind` assigns each op one.
KINDS = ('block convolutions', 'stem and head convolutions', 'casts',
         'weight normalization', 'Adam update', 'other')
# Layers whose convolutions compute in float32 under a mixed policy
# (tf_realnvp.networks), as their names appear in the traced graph.
FLOAT32_LAYERS = ('/stem_', '/head_', '/skip')
# An op inside a weight-normalized layer: `w = g v / ||v||` and its gradient,
# unless it is the layer's convolution, bias or cast (counted as those).
WEIGHT_NORM_LAYER = re.compile(
    r'/(stem|first|second|skip\d+|hidden\d+)(_\d+)?/')


def kind(name, op_type):
  """The kind of the op `name` (its node name) of type `op_type`."""
  if 'adam' in name.lower():
    return 'Adam update'
  if 'Conv2D' in op_type or 'MatMul' in op_type:
    if any(layer in name for layer in FLOAT32_LAYERS):
      return 'stem and head convolutions'
    return 'block convolutions'
  if op_type == 'Cast':
    return 'casts'
  if WEIGHT_NORM_LAYER.search(name) and 'Bias' not in op_type:
    return 'weight normalization'
  return 'other'


def op_times(trace_dir):
  """`{(node name, op type): summed seconds}` of the TF ops in a trace."""
  path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                          recursive=True))[-1]
  space = xplane_pb2.XSpace()
  with open(path, 'rb') as f:
    space.ParseFromString(f.read())
  times = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      if not line.name.startswith('tf_Compute'):
        continue
      for event in line.events:
        metadata = plane.event_metadata[event.metadata_id]
        if metadata.display_name:  # A TF op: 'node name:OpType'.
          name, op_type = metadata.name.rsplit(':', 1)
          times[(name, op_type)] += event.duration_ps * 1e-12
  return times


def profile(precision):
  """The breakdown of one precision's train step."""
  keras.utils.set_random_seed(0)
  shape = (FLAGS.image_size, FLAGS.image_size, 3)
  flow = models.realnvp(shape, FLAGS.model, precision)
  optimizer = optimizers.FusedAdam(1e-3)
  optimizer.build(flow.distribution.trainable_variables)
  step = tf.function(models.make_train_step(flow, optimizer))
  pixels = tf.random.stateless_uniform((FLAGS.batch_size,) + shape, [0, 1],
                                       maxval=256.)
  for _ in range(2):
    step(pixels).numpy()
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    step(pixels).numpy()
  wall = (time.perf_counter() - start) / FLAGS.steps
  trace_dir = tempfile.mkdtemp()
  tf.profiler.experimental.start(trace_dir)
  for _ in range(FLAGS.steps):
    step(pixels).numpy()
  tf.profiler.experimental.stop()
  by_kind = collections.Counter()
  by_type = collections.Counter()
  for (name, op_type), seconds in op_times(trace_dir).items():
    by_kind[kind(name, op_type)] += seconds / FLAGS.steps
    by_type[op_type] += seconds / FLAGS.steps
  # Every convolution, forward and both gradients (flops.py's hand count).
  convolution_flops = 3 * FLAGS.batch_size * flow.forward_flops
  convolution_s = sum(by_kind[k] for k in KINDS if 'convolutions' in k)
  ceiling = hardware.matmul_flops_per_second(
      'float32' if precision == 'float32' else 'bfloat16', 4096)
  return dict(wall_s=wall, op_s=sum(by_kind.values()),
              kinds={k: by_kind[k] for k in KINDS},
              ceiling_flops_per_s=ceiling,
              convolutions_share_of_ceiling=(
                  convolution_flops / convolution_s / ceiling),
              step_share_of_ceiling=convolution_flops / wall / ceiling,
              top_op_types=dict(by_type.most_common(12)))


def markdown(results):
  lines = ['| kind | ' + ' | '.join(f'{p} ms/step | share' for p in results)
           + ' |', '|---|' + '---|---|' * len(results)]
  for name in KINDS:
    lines.append(f'| {name} | ' + ' | '.join(
        f'{1e3 * r["kinds"][name]:.0f} | {r["kinds"][name] / r["wall_s"]:.0%}'
        for r in results.values()) + ' |')
  lines.append('| between ops | ' + ' | '.join(
      f'{1e3 * (r["wall_s"] - r["op_s"]):.0f} | '
      f'{(r["wall_s"] - r["op_s"]) / r["wall_s"]:.0%}'
      for r in results.values()) + ' |')
  lines.append('| step (wall clock) | ' + ' | '.join(
      f'{1e3 * r["wall_s"]:.0f} | 100%' for r in results.values()) + ' |')
  lines += ['', '| | ' + ' | '.join(results) + ' |',
            '|---|' + '---|' * len(results),
            '| matmul rate (GFLOP/s) | ' + ' | '.join(
                f'{r["ceiling_flops_per_s"] / 1e9:.0f}'
                for r in results.values()) + ' |',
            '| convolutions alone, share of it | ' + ' | '.join(
                f'{r["convolutions_share_of_ceiling"]:.0%}'
                for r in results.values()) + ' |',
            '| whole step, share of it | ' + ' | '.join(
                f'{r["step_share_of_ceiling"]:.0%}'
                for r in results.values()) + ' |']
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
  results = {p: profile(p) for p in FLAGS.precisions}
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  with open(os.path.join(FLAGS.out_dir, 'step_profile.json'), 'w') as f:
    json.dump(dict(model=FLAGS.model, batch_size=FLAGS.batch_size,
                   inter_op_threads=FLAGS.inter_op_threads,
                   machine=hardware.description(), results=results), f,
              indent=2)
  text = markdown(results)
  with open(os.path.join(FLAGS.out_dir, 'step_profile.md'), 'w') as f:
    f.write(text)
  print(text)
  for precision, result in results.items():
    print(precision, {k: f'{1e3 * v:.0f} ms'
                      for k, v in result['top_op_types'].items()})


if __name__ == '__main__':
  app.run(main)
