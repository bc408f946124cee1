"""The hardware's bfloat16 and the precision it chooses: the detection from
CPU flags and GPU details, `resolve`'s default, the first line and the
warning a run prints, and runs recorded before the default.

tests/conftest.py shows every test a CPU without bfloat16 flags; the tests
of other hardware patch `hardware.gpu_details` and `hardware.CPU_INFO`.
"""

import dataclasses
import json
import logging
import shutil

import pytest
import tensorflow_datasets as tfds
from runs import TINY_IMAGE_MODEL

from tf_realnvp import config as config_lib
from tf_realnvp import evaluation
from tf_realnvp import flows
from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.config import hardware
from tf_realnvp.config import presets

NATIVE_CPU = 'this CPU computes bfloat16 natively: avx512_bf16'
EMULATING_CPU = 'this CPU has neither amx_bf16 nor avx512_bf16'
# Mock MNIST (16 images per split), a one-scale model, one step.
IMAGES = dict(dataset='mnist', batch_size=8, **TINY_IMAGE_MODEL,
              train_steps=1, eval_batches=1, export=False)
POINTS = dict(num_coupling_layers=2, hidden_units=(8,), train_steps=1,
              eval_batches=1, export=False)


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
  name = presets.IMAGE_DEFAULTS['flow']
  family = flows.FLOWS[name]
  monkeypatch.setitem(flows.FLOWS, name, dataclasses.replace(
      family, image_settings=tuple(setting for setting in
                                   family.image_settings
                                   if setting != 'network_dtype')))
  resolved = experiment.resolve(config_lib.Config(dataset='mnist')).config
  assert resolved.mixed_precision is False


def train(settings, capsys):
  """Trains `settings` (tfds datasets mocked); returns the lines printed."""
  with tfds.testing.mock_data(num_examples=16):
    result = training.train_and_evaluate(
        experiment.resolve(config_lib.Config(**settings)))
  assert result['step'] == settings['train_steps']
  return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize('native, settings, first_line', [
    (True, IMAGES, f'precision: mixed_bfloat16 ({NATIVE_CPU}; '
     '--mixed_precision=false for float32)'),
    (False, IMAGES, f'precision: float32 ({EMULATING_CPU}; bfloat16 would '
     'be emulated)'),
    (True, dict(IMAGES, mixed_precision=False), None),
    (True, dict(IMAGES, mixed_precision=True), None),
    (True, POINTS, None),
], ids=['images-native', 'images-emulated', 'given-false', 'given-true',
        '2d'])
def test_the_first_line_says_the_precision_the_hardware_chose(
    request, tmp_path, capsys, caplog, native, settings, first_line):
  """The precision and why, where the hardware chose it; nothing new
  where the user did, or on 2-D data. No warning on native hardware."""
  if native:
    request.getfixturevalue('native_cpu')
  with caplog.at_level(logging.WARNING):
    lines = train(dict(settings, model_dir=str(tmp_path / 'run')), capsys)
  if first_line:
    assert lines[0] == first_line
  else:
    assert lines[0].startswith('step ')
  assert 'precision' not in '\n'.join(lines[1:])
  assert 'mixed_precision' not in caplog.text


def test_bfloat16_asked_on_emulating_hardware_trains_with_a_warning(
    tmp_path, capsys, caplog):
  with caplog.at_level(logging.WARNING):
    lines = train(dict(IMAGES, mixed_precision=True,
                       model_dir=str(tmp_path / 'run')), capsys)
  assert lines[0].startswith('step ')
  warnings = [record.getMessage() for record in caplog.records
              if 'mixed_precision' in record.getMessage()]
  assert warnings == [
      f'mixed_precision: bfloat16 is emulated on this hardware '
      f'({EMULATING_CPU}) and will be slow; --mixed_precision=false for '
      'float32.']
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['mixed_precision'] is True
  assert 'mixed_precision' in saved['given']


@pytest.fixture(scope='module')
def float32_run(tmp_path_factory):
  """An image run of one step in float32, as before the default."""
  model_dir = tmp_path_factory.mktemp('float32') / 'run'
  with tfds.testing.mock_data(num_examples=16):
    training.train_and_evaluate(experiment.resolve(config_lib.Config(
        **IMAGES, model_dir=str(model_dir))))
  return model_dir


def test_a_run_recorded_before_the_default_evaluates_and_resumes(
    tmp_path, capsys, float32_run, native_cpu):
  """Its config.json says float32, or lacks the field (written before it
  existed), which means float32; resumed where bfloat16 is native, it goes
  on in float32, the precision it started in, and its first line says so.
  Given, the flag changes it."""
  model_dir = tmp_path / 'run'
  shutil.copytree(float32_run, model_dir)
  path = model_dir / 'config.json'
  values = json.loads(path.read_text())
  assert values['mixed_precision'] is False  # The pinned conftest CPU.
  assert config_lib.Config.load(str(model_dir)).mixed_precision is False
  del values['mixed_precision']
  path.write_text(json.dumps(values))
  assert config_lib.Config.load(str(model_dir)).mixed_precision is False
  with tfds.testing.mock_data(num_examples=16):
    assert evaluation.evaluate(str(model_dir), eval_batches=1)['step'] == 1
  lines = train(dict(IMAGES, train_steps=2, model_dir=str(model_dir)), capsys)
  assert lines[0] == (f'precision: float32 (the run in this directory started '
                      f'in it; {NATIVE_CPU})')
  assert json.loads(path.read_text())['mixed_precision'] is False
  train(dict(IMAGES, train_steps=3, mixed_precision=True,
             model_dir=str(model_dir)), capsys)
  assert json.loads(path.read_text())['mixed_precision'] is True
