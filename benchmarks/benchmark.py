r"""Speed of RealNVP training, log_prob and sampling, beside TFP's Glow.

    python -m benchmarks.benchmark --out_dir=benchmark_results

For each model of `--models` (the paper's CIFAR-10 RealNVP, 13.2M weights,
and a small one) and for TFP's Glow at the same parameter count, in float32
and mixed bfloat16, with XLA off and on, it measures

- train-step images/s: one Adam step on
  `-mean log p(x) + 5e-5 * weight_scale_l2` (Dinh et al. 2017, Sec. 4.1);
- log_prob images/s;
- the latency of sampling 36 images (the 6x6 grid training writes);
- compile time: the first call minus a steady-state call;
- peak memory: TensorFlow's allocator on the device, and the process RSS,
  also with activations recomputed instead of kept (`--recompute`, at other
  depths with `--res_blocks`: `tf_realnvp.recompute`);

and divides each FLOP rate by the machine's own ceiling, the FLOP/s of a
large matmul measured in the same process with the same TensorFlow (float32
rows against the float32 matmul, mixed rows against the bfloat16 one). FLOPs
per image are counted by hand from the architecture (`flops.py`) and
cross-checked with TF's profiler on the traced graphs.

Every row runs in a fresh process. Each figure is the median of
`--timed_calls` calls after the compiling first call and `--warmup_calls`
more. Writes `benchmark.json` and `benchmark.md` to `--out_dir`. `--quick`
runs a tiny model on 8x8 images in seconds.
"""

from concurrent import futures
import dataclasses
import itertools
import json
import multiprocessing
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from benchmarks import flops
from benchmarks import hardware
from benchmarks import models
from benchmarks import report
from tf_realnvp import recompute as recompute_lib
from tf_realnvp.training import optimizers

FLAGS = flags.FLAGS
flags.DEFINE_string('out_dir', 'benchmark_results',
                    'Where to write benchmark.json and benchmark.md.')
flags.DEFINE_list('models', ['cifar10', 'small'],
                  'RealNVP architectures, from '
                  f'{sorted(models.ARCHITECTURES)}.')
flags.DEFINE_list('flows', list(models.FLOWS),
                  'realnvp (tf_realnvp.RealNVP) and/or glow (TFP\'s Glow '
                  'with as many weights as each model).')
flags.DEFINE_list('precisions', list(models.PRECISIONS),
                  'Dtype policies of the coupling networks.')
flags.DEFINE_list('xla', ['false', 'true'],
                  'tf.function(jit_compile=...) settings to measure.')
flags.DEFINE_list('recompute', ['none'],
                  'RealNVP rows: what training recomputes instead of '
                  'keeping, from none, networks, invertible.')
flags.DEFINE_list('res_blocks', [],
                  'RealNVP rows: residual blocks per network, instead of '
                  "the model's own (e.g. 4,8,16,32).")
flags.DEFINE_integer('image_size', 32, 'Images are image_size^2 x 3.')
flags.DEFINE_integer('batch_size', 16, 'Train-step batch size.')
flags.DEFINE_integer('log_prob_batch_size', 64, 'log_prob batch size.')
flags.DEFINE_integer('num_samples', 36, 'Images per sampling call.')
flags.DEFINE_integer('warmup_calls', 1,
                     'Untimed calls after the first, compiling one.')
flags.DEFINE_integer('timed_calls', 3, 'Timed calls; the median counts.')
flags.DEFINE_integer('matmul_size', 4096, 'Side of the ceiling matmul.')
flags.DEFINE_integer('glow_blocks', 3, 'Glow levels (num_glow_blocks).')
flags.DEFINE_integer('glow_steps_per_block', 8,
                     'Glow steps per level; the coupling width is then '
                     'chosen to match the RealNVP parameter count.')
flags.DEFINE_float('learning_rate', 1e-3, 'Adam learning rate.')
flags.DEFINE_integer('intra_op_threads', 0,
                     'TensorFlow intra-op threads (0: its default).')
flags.DEFINE_integer('inter_op_threads', 0,
                     'TensorFlow inter-op threads (0: its default).')
flags.DEFINE_string('profile_dir', None,
                    'If set, writes a TensorBoard profile of two train steps '
                    'of each configuration under this directory.')
flags.DEFINE_integer('seed', 0, 'Seed of the weights, data and samples.')
flags.DEFINE_bool('quick', False,
                  'Smoke-test settings for every flag not given: the tiny '
                  'model on 8x8 images, batches of 2, one timed call.')

# What --quick changes, unless the flag is given.
QUICK = dict(models=['tiny'], image_size=8, batch_size=2,
             log_prob_batch_size=2, num_samples=4, warmup_calls=0,
             timed_calls=1, matmul_size=256, glow_steps_per_block=1)
_BOOLEANS = {'false': False, 'true': True}


@dataclasses.dataclass
class Settings:
  """Everything one benchmark run depends on (the flags, resolved)."""
  models: list
  flows: list
  precisions: list
  xla: list
  recompute: list
  res_blocks: list
  image_size: int
  batch_size: int
  log_prob_batch_size: int
  num_samples: int
  warmup_calls: int
  timed_calls: int
  matmul_size: int
  glow_blocks: int
  glow_steps_per_block: int
  learning_rate: float
  intra_op_threads: int
  inter_op_threads: int
  seed: int
  profile_dir: str = None

  @property
  def event_shape(self):
    return (self.image_size, self.image_size, 3)


def time_calls(function, argument, warmup_calls, timed_calls):
  """`(first call seconds, median steady-state seconds, last output)`.

  Each call waits for its result (`.numpy()`), so asynchronous devices are
  timed to completion.
  """
  def timed_call():
    start = time.perf_counter()
    output = function(argument).numpy()
    return time.perf_counter() - start, output

  first, output = timed_call()
  for _ in range(warmup_calls):
    timed_call()
  times = []
  for _ in range(timed_calls):
    seconds, output = timed_call()
    times.append(seconds)
  return first, float(np.median(times)), output


def measure(flow, jit, settings, profile_name=None):
  """Sampling, log_prob and train-step figures of `flow` under one setting."""
  distribution = flow.distribution
  pixels = tf.random.stateless_uniform(
      [max(settings.batch_size, settings.log_prob_batch_size),
       *settings.event_shape], [settings.seed, 1], maxval=256.)
  train_inputs = flow.to_inputs(pixels[:settings.batch_size])
  log_prob_inputs = flow.to_inputs(pixels[:settings.log_prob_batch_size])
  sample_seed = tf.constant([settings.seed, 2])
  optimizer = optimizers.FusedAdam(settings.learning_rate)
  optimizer.build(distribution.trainable_variables)

  sample = tf.function(
      lambda seed: distribution.sample(settings.num_samples, seed=seed),
      jit_compile=jit)
  log_prob = tf.function(distribution.log_prob, jit_compile=jit)
  train_step = tf.function(models.make_train_step(flow, optimizer),
                           jit_compile=jit)
  # Function, argument, images per call, forward passes per image.
  phases = {
      'sample': (sample, sample_seed, settings.num_samples, 1),
      'log_prob': (log_prob, log_prob_inputs, settings.log_prob_batch_size, 1),
      'train': (train_step, train_inputs, settings.batch_size, 3),
  }
  results = {}
  for phase, (function, argument, images, passes) in phases.items():
    with hardware.PeakMemory() as memory:
      first, seconds, output = time_calls(
          function, argument, settings.warmup_calls, settings.timed_calls)
    results[phase] = {
        'images': images,
        'seconds': seconds,
        'images_per_s': images / seconds,
        'flops_per_image': passes * flow.forward_flops,
        'compile_s': max(first - seconds, 0.),
        'peak_tensor_mib': memory.tensor_bytes / 2**20,
        'resident_tensor_mib': memory.resident_bytes / 2**20,
        'peak_rss_mib': (memory.rss_bytes / 2**20
                         if memory.rss_bytes is not None else None),
        'finite_output': bool(np.all(np.isfinite(output))),
    }
  results['profiled_flops_per_image'] = {
      'log_prob': flops.profiled_flops(log_prob.get_concrete_function(
          log_prob_inputs)) / settings.log_prob_batch_size,
      'train': flops.profiled_flops(train_step.get_concrete_function(
          train_inputs)) / settings.batch_size,
  }
  if profile_name and settings.profile_dir:
    tf.profiler.experimental.start(
        os.path.join(settings.profile_dir, profile_name))
    for _ in range(2):
      train_step(train_inputs).numpy()
    tf.profiler.experimental.stop()
  return results


def measure_configuration(settings, model, kind, precision, jit,
                          parameters_to_match=None, recompute='none',
                          res_blocks=None):
  """One row of the report, measured in the calling process.

  Builds the flow `kind` ('realnvp', with `recompute` and `res_blocks`
  residual blocks if not `None`; or 'glow' with `parameters_to_match`
  weights, by default those of RealNVP `model`) and measures it between two
  measurements of this process's matmul ceiling in the row's compute dtype.
  """
  tf.config.threading.set_intra_op_parallelism_threads(
      settings.intra_op_threads)
  tf.config.threading.set_inter_op_parallelism_threads(
      settings.inter_op_threads)
  dtype = 'float32' if precision == 'float32' else 'bfloat16'
  ceiling_before = hardware.matmul_flops_per_second(dtype, settings.matmul_size)
  keras.utils.set_random_seed(settings.seed)
  start = time.perf_counter()
  if kind == 'realnvp':
    flow = models.realnvp(settings.event_shape, model, precision, recompute,
                          res_blocks)
  else:
    parameters_to_match = parameters_to_match or models.realnvp(
        settings.event_shape, model, 'float32').parameters
    flow = models.glow(
        settings.event_shape, parameters_to_match, settings.glow_blocks,
        settings.glow_steps_per_block, precision, settings.seed)
  build_s = time.perf_counter() - start
  name = f'{model}-{kind}-{precision}-{"xla" if jit else "plain"}'
  if kind == 'realnvp':
    name += f'-{flow.settings["num_res_blocks"]}blocks-{recompute}'
  figures = measure(flow, jit, settings, profile_name=name)
  # The better of two measurements, so one busy moment does not lower it.
  ceiling = max(ceiling_before, hardware.matmul_flops_per_second(
      dtype, settings.matmul_size))
  for phase in ('sample', 'log_prob', 'train'):
    figures[phase]['share_of_ceiling'] = (
        figures[phase]['flops_per_image'] * figures[phase]['images_per_s']
        / ceiling)
  return {
      'model': model, 'flow': kind, 'precision': precision, 'xla': jit,
      'recompute': recompute,
      'num_res_blocks': flow.settings.get('num_res_blocks'),
      'parameters': flow.parameters, 'architecture': flow.settings,
      'build_s': build_s, 'ceiling_flops_per_s': ceiling,
      'forward_flops_per_image': flow.forward_flops, **figures}


def run(settings):
  """Runs the benchmark; returns the report as a JSON-able dict.

  Every row runs in a fresh process: TensorFlow and TFP keep a process's
  traced graphs and compiled kernels alive (TFP's bijector cache holds every
  traced `log_prob` graph), so one process would grow by hundreds of MiB per
  row and carry earlier rows' memory into later figures.
  """
  rows = []
  realnvp_parameters = {}
  spawn = multiprocessing.get_context('spawn')
  for model, kind, precision, jit, recompute, res_blocks in itertools.product(
      settings.models, settings.flows, settings.precisions, settings.xla,
      settings.recompute, settings.res_blocks or [None]):
    if kind != 'realnvp' and (recompute != 'none' or res_blocks):
      continue  # TFP's Glow has neither.
    logging.info('Measuring %s %s %s, XLA %s, recompute %s, blocks %s',
                 model, kind, precision, jit, recompute, res_blocks)
    with futures.ProcessPoolExecutor(1, mp_context=spawn) as process:
      row = process.submit(
          measure_configuration, settings, model, kind, precision, jit,
          realnvp_parameters.get(model), recompute, res_blocks).result()
    if kind == 'realnvp' and recompute == 'none' and not res_blocks:
      realnvp_parameters[model] = row['parameters']
    logging.info('%.2f train images/s, %.0f%% of the ceiling',
                 row['train']['images_per_s'],
                 100 * row['train']['share_of_ceiling'])
    rows.append(row)
  return {
      'command': ' '.join(['python -m benchmarks.benchmark'] + sys.argv[1:]),
      'machine': hardware.description(),
      'settings': dataclasses.asdict(settings),
      'flop_counting': report.FLOP_COUNTING,
      'results': rows,
      'ratios': report.ratios(rows),
  }


def settings_from_flags():
  """`Settings` from the flags, with `--quick`'s defaults; checks names."""
  values = {field.name: FLAGS[field.name].value
            for field in dataclasses.fields(Settings)}
  if FLAGS.quick:
    values.update({name: value for name, value in QUICK.items()
                   if not FLAGS[name].present})
  for name, known in (('models', models.ARCHITECTURES),
                      ('flows', models.FLOWS),
                      ('precisions', models.PRECISIONS),
                      ('xla', _BOOLEANS)):
    unknown = set(values[name]) - set(known)
    if unknown:
      raise app.UsageError(f'--{name}: unknown {sorted(unknown)}; known: '
                           f'{list(known)}.')
  unknown = set(values['recompute']) - set(recompute_lib.MODES)
  if unknown:
    raise app.UsageError(f'--recompute: unknown {sorted(unknown)}; known: '
                         f'{list(recompute_lib.MODES)}.')
  values['res_blocks'] = [int(value) for value in values['res_blocks']]
  values['xla'] = [_BOOLEANS[value] for value in values['xla']]
  return Settings(**values)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  result = run(settings_from_flags())
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  with open(os.path.join(FLAGS.out_dir, 'benchmark.json'), 'w') as f:
    json.dump(result, f, indent=2)
  table = report.markdown(result)
  with open(os.path.join(FLAGS.out_dir, 'benchmark.md'), 'w') as f:
    f.write(table)
  print(table)


if __name__ == '__main__':
  app.run(main)
