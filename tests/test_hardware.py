"""The hardware's bfloat16 and the precision it chooses: the detection from
CPU flags and GPU details, and `resolve`'s default.

tests/conftest.py shows every test a CPU without bfloat16 flags; the tests
of other hardware patch `hardware.gpu_details` and `hardware.CPU_INFO`.
"""

import dataclasses

import pytest

from tf_realnvp import config as config_lib
from tf_realnvp import flows
from tf_realnvp.config import experiment
from tf_realnvp.config import hardware

NATIVE_CPU = 'this CPU computes bfloat16 natively: avx512_bf16'
EMULATING_CPU = 'this CPU has neither amx_bf16 nor avx512_bf16'


@pytest.fixture
def native_cpu(monkeypatch, tmp_path):
  """A CPU of two processors with AVX512-BF16 (and no GPU, as for all)."""
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text(''.join(
      f'processor\t: {n}\nflags\t\t: fpu avx512f avx512_bf16\n\n'
      for n in range(2)))
  monkeypatch.setattr(hardware, 'CPU_INFO', str(cpuinfo))


@pytest.mark.parametrize('cpuinfo, expected', [
    ('flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n', (True, NATIVE_CPU)),
    ('flags : amx_bf16 avx512_bf16\nflags : amx_bf16 avx512_bf16\n',
     (True, 'this CPU computes bfloat16 natively: amx_bf16, avx512_bf16')),
    ('flags\t\t: fpu avx2 avx512f avx512_vnni\n', (False, EMULATING_CPU)),
    # Every processor must have it; another line's bf16 does not count.
    ('flags : avx512_bf16\nflags : avx2\n', (False, EMULATING_CPU)),
    ('vmx flags : avx512_bf16\nflags : avx2\n', (False, EMULATING_CPU)),
    # ARM lists `Features`, and its bf16 is not in the rule.
    ('Features\t: fp asimd bf16\n', (False, EMULATING_CPU)),
    ('', (False, EMULATING_CPU)),
])
def test_the_cpu_flags_decide_the_cpus_support(cpuinfo, expected):
  assert hardware.cpu_support(cpuinfo) == expected


@pytest.mark.parametrize('capabilities, expected', [
    ([(8, 0)], (True, 'this GPU computes bfloat16 natively: compute '
                'capability 8.0')),
    ([(9, 0), (8, 6)], (True, 'the GPUs compute bfloat16 natively: compute '
                        'capability 8.6, 9.0')),
    ([(8, 0), (7, 5)], (False, 'GPU 1 has compute capability 7.5, below 8.0')),
    ([None], (False, 'GPU 0 has no known compute capability')),
])
def test_every_gpu_needs_compute_capability_8(capabilities, expected):
  details = [{} if capability is None else
             dict(compute_capability=capability, device_name='a GPU')
             for capability in capabilities]
  assert hardware.gpu_support(details) == expected


def test_the_gpus_decide_if_there_are_any(monkeypatch, native_cpu):
  assert hardware.bfloat16_support() == (True, NATIVE_CPU)
  monkeypatch.setattr(hardware, 'gpu_details',
                      lambda: [dict(compute_capability=(7, 0))])
  assert hardware.bfloat16_support() == (
      False, 'GPU 0 has compute capability 7.0, below 8.0')


def test_unreadable_cpu_flags_mean_emulated(monkeypatch, tmp_path):
  monkeypatch.setattr(hardware, 'CPU_INFO', str(tmp_path / 'none'))
  native, reason = hardware.bfloat16_support()
  assert not native and 'unreadable' in reason


@pytest.mark.parametrize('native, settings, expected', [
    (True, dict(dataset='mnist'), True),
    (False, dict(dataset='mnist'), False),
    (True, dict(dataset='moons'), False),
    (True, dict(dataset='moons', flow='ffjord'), False),
    (True, dict(dataset='mnist', mixed_precision=False), False),
    (False, dict(dataset='mnist', mixed_precision=True), True),
    (False, dict(dataset='moons', mixed_precision=True), True),
], ids=['images-native', 'images-emulated', '2d', '2d-ffjord',
        'given-false', 'given-true', '2d-given-true'])
def test_the_default_precision_is_bfloat16_for_images_on_native_hardware(
    request, native, settings, expected):
  if native:
    request.getfixturevalue('native_cpu')
  resolved = experiment.resolve(config_lib.Config(**settings)).config
  assert resolved.mixed_precision is expected
  assert ('mixed_precision' in resolved.given) == (
      'mixed_precision' in settings)


def test_a_flow_without_bfloat16_networks_stays_float32(
    monkeypatch, native_cpu):
  """No image flow has one today; one added would take float32."""
  realnvp = flows.FLOWS['realnvp']
  monkeypatch.setitem(flows.FLOWS, 'realnvp', dataclasses.replace(
      realnvp, image_settings=tuple(setting for setting in
                                    realnvp.image_settings
                                    if setting != 'network_dtype')))
  resolved = experiment.resolve(config_lib.Config(dataset='mnist')).config
  assert resolved.mixed_precision is False
