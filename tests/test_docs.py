"""Every Python block of README.md and docs/*.md runs, on tiny settings.

A page's blocks run in order in one namespace, which holds what the page
says the reader has (`PAGES`: their images, a trained run, its exports),
with the page's paths and sizes replaced by those of tiny stand-ins
(`TINY`), so an example cannot rot unnoticed.
"""

import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from runs import TINY_IMAGE_MODEL

import tf_realnvp
from tf_realnvp import config as config_lib
from tf_realnvp import training
from tf_realnvp.config import experiment
from tf_realnvp.serving import portable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Text of a page's blocks and its tiny stand-in.
TINY = {
    'README.md': [
        ('(32, 32, 3))', '(8, 8, 3), num_res_blocks=1, num_filters=4)'),
        ('[8, 32, 32, 3]', '[8, 8, 8, 3]')],
    'docs/model.md': [
        ('(28, 28, 1)', '(8, 8, 1)'), ('epochs=5', 'epochs=1'),
        ('num_res_blocks=2, num_filters=32', 'num_res_blocks=1, num_filters=4'),
        ('(32, 32, 3),', '(8, 8, 3), num_res_blocks=1, num_filters=4,')],
    'docs/evaluation.md': [("'runs/photos", "'{run}")],
    'docs/export.md': [("'runs/moons/export", "'{export}")],
}


def python_blocks(page):
  """The ```python blocks of `page`, in order."""
  with open(os.path.join(ROOT, page)) as f:
    return re.findall(r'^```python\n(.*?)^```$', f.read(), re.M | re.S)


def pages():
  return ['README.md'] + sorted(
      os.path.relpath(path, ROOT)
      for path in glob.glob(os.path.join(ROOT, 'docs', '*.md')))


def images(count, shape, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (count,) + shape).astype(
      np.uint8)


def photos_run(root):
  """A two-step image run of 8x8 RGB images, exported: `runs/photos`."""
  np.savez(root / 'photos.npz', train=images(16, (8, 8, 3)),
           test=images(8, (8, 8, 3), seed=1))
  model_dir = str(root / 'photos')
  training.train_and_evaluate(experiment.resolve(config_lib.Config(
      dataset=f'npz:{root / "photos.npz"}', **TINY_IMAGE_MODEL, batch_size=8,
      train_steps=2, model_dir=model_dir)))
  return model_dir


def moons_export(root):
  """A small 2-D flow's TFLite and ONNX files: `runs/moons/export`."""
  flow = tf_realnvp.make_flow('realnvp', (2,), num_layers=2,
                              hidden_units=(8,))
  portable.export_portable(flow, str(root / 'export'))
  return str(root / 'export')


def namespace(page, root):
  """What the page's reader has, and the values its `TINY` text takes."""
  if page == 'docs/model.md':
    rng = np.random.RandomState(0)
    # One batch of 16 labels for the images of `x` and the 2-D points.
    return dict(tf_realnvp=tf_realnvp, train_images=images(16, (8, 8, 1)),
                test_images=images(8, (8, 8, 1), seed=1),
                x=tf.constant(rng.uniform(0., 256., (16, 8, 8, 3)),
                              tf.float32),
                labels=np.arange(16) % 8,
                points=rng.normal(size=(16, 2)).astype(np.float32)), {}
  if page == 'docs/evaluation.md':
    return dict(images=images(12, (8, 8, 3), seed=2)), dict(
        run=photos_run(root))
  if page == 'docs/export.md':
    return {}, dict(export=moons_export(root))
  return {}, {}


def test_every_page_has_its_stand_ins():
  assert set(TINY) <= set(pages())
  for page in pages():
    for text, _ in TINY.get(page, []):
      assert any(text in block for block in python_blocks(page)), (page, text)


@pytest.mark.parametrize('page', [p for p in pages() if python_blocks(p)])
def test_the_python_blocks_run(page, tmp_path):
  names, values = namespace(page, tmp_path)
  for block in python_blocks(page):
    for text, tiny in TINY.get(page, []):
      block = block.replace(text, tiny.format(**values))
    exec(compile(block, f'{page} block', 'exec'), names)  # pylint: disable=exec-used
