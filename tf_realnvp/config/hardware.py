"""Whether the devices a run trains on compute bfloat16 natively."""

from typing import NamedTuple

import tensorflow as tf

# The CPU flags of a bfloat16 matmul unit, and where Linux lists the flags.
NATIVE_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')
CPU_INFO = '/proc/cpuinfo'
# The least compute capability of a GPU with bfloat16 tensor cores.
NATIVE_GPU_CAPABILITY = (8, 0)


class Support(NamedTuple):
  """Whether devices compute bfloat16 natively, and why, as a phrase for
  messages (e.g. 'this CPU computes bfloat16 natively: avx512_bf16')."""
  native: bool
  reason: str


def bfloat16_support():
  """Whether the devices a run will train on compute bfloat16 natively, and
  why, as a `Support`: the GPUs if TensorFlow sees any, else the CPU.

  On those, training in mixed bfloat16 runs faster than in float32 and
  learns as well per step (BENCHMARKS.md), so it reaches a given bits/dim
  sooner, and `resolve` makes it the default of image runs there; elsewhere
  bfloat16 is emulated, and slow.

  The rule: with GPUs (those TensorFlow sees, which a run trains on), every one
  of compute capability 8.0 or more (Ampere and later); without, a CPU whose
  flags in /proc/cpuinfo list AMX-BF16 or AVX512-BF16 (Linux; without that
  file the answer is no).
  """
  details = gpu_details()
  if details:
    return gpu_support(details)
  try:
    with open(CPU_INFO) as f:
      cpuinfo = f.read()
  except OSError:
    return Support(False, f'this CPU\'s flags are unknown ({CPU_INFO} '
                   'is unreadable)')
  return cpu_support(cpuinfo)


def gpu_details():
  """`tf.config.experimental.get_device_details` of each GPU TensorFlow
  sees, in order."""
  return [tf.config.experimental.get_device_details(gpu)
          for gpu in tf.config.list_physical_devices('GPU')]


def gpu_support(details):
  """The `Support` of GPUs with these device details: native if every one
  has a `compute_capability` of `NATIVE_GPU_CAPABILITY` or more."""
  capabilities = [detail.get('compute_capability') for detail in details]
  for index, capability in enumerate(capabilities):
    if capability is None:
      return Support(False, f'GPU {index} has no known compute capability')
    if tuple(capability) < NATIVE_GPU_CAPABILITY:
      return Support(False, f'GPU {index} has compute capability '
                     f'{_version(capability)}, below '
                     f'{_version(NATIVE_GPU_CAPABILITY)}')
  devices = 'this GPU computes' if len(details) == 1 else 'the GPUs compute'
  shown = ', '.join(sorted({_version(c) for c in capabilities}))
  return Support(True, f'{devices} bfloat16 natively: compute capability '
                 f'{shown}')


def cpu_support(cpuinfo):
  """The `Support` of the CPU that `cpuinfo` (the text of /proc/cpuinfo)
  describes: native if a flag of `NATIVE_CPU_FLAGS` is among the `flags` of
  every processor it lists."""
  flag_sets = [set(line.partition(':')[2].split())
               for line in cpuinfo.splitlines()
               if line.partition(':')[0].strip() == 'flags']
  common = set.intersection(*flag_sets) if flag_sets else set()
  found = [flag for flag in NATIVE_CPU_FLAGS if flag in common]
  if found:
    return Support(True, 'this CPU computes bfloat16 natively: '
                   + ', '.join(found))
  return Support(False, 'this CPU has neither '
                 + ' nor '.join(NATIVE_CPU_FLAGS))


def _version(capability):
  return '.'.join(map(str, capability))


def precision_messages(experiment):
  """`(line, warning)` about a run's precision, each a string or None.

  The line, the run's first, where the hardware chose the precision (an
  image run that leaves --mixed_precision unset): which and why. A resumed
  run keeps the precision it started in (`experiment.resumed`), which the
  line says where this hardware would choose the other. The warning, where
  bfloat16 runs on hardware that emulates it: that it will be slow.
  """
  config = experiment.config
  chosen = ('mixed_precision' not in config.given_fields()
            and experiment.hardware_chooses_precision())
  if not (chosen or config.mixed_precision):
    return None, None  # float32 as asked, or on 2-D data: nothing to say.
  support = bfloat16_support()
  line = warning = None
  if chosen:
    if config.mixed_precision != support.native:
      why = f'the run in this directory started in it; {support.reason}'
    elif config.mixed_precision:
      why = f'{support.reason}; --mixed_precision=false for float32'
    else:
      why = f'{support.reason}; bfloat16 would be emulated'
    precision = 'mixed_bfloat16' if config.mixed_precision else 'float32'
    line = f'precision: {precision} ({why})'
  if config.mixed_precision and not support.native:
    warning = (f'mixed_precision: bfloat16 is emulated on this hardware '
               f'({support.reason}) and will be slow; '
               '--mixed_precision=false for float32.')
  return line, warning
