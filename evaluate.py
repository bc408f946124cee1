"""Evaluates a trained run: `python evaluate.py --model_dir=runs/cifar10`.

Prints the test bits/dim (images, averaged over several dequantization draws)
or the test NLL in nats (2-D data) of the latest checkpoint (with the averaged
weights if the run used `--ema_decay`) and writes it to `model_dir/eval.json`;
draws a 6x6 sample grid at `--temperature` (images) or a density plot (2-D);
`--export` writes `model_dir/saved_model`.
"""

import json
import os
import sys

from absl import app
from absl import flags
import tensorflow as tf

from tf_realnvp import input_pipeline
from tf_realnvp import trainer

flags.DEFINE_string('model_dir', None, 'The --model_dir of a training run.')
flags.DEFINE_integer('num_dequantizations', 1,
                     'Images: dequantization noise draws to average over.')
flags.DEFINE_float('temperature', 1.0,
                   'Standard deviation of the base Normal for the samples.')
flags.DEFINE_integer('eval_batches', None,
                     'Test batches to use (default: the whole test split).')
flags.DEFINE_bool('export', False, 'Also write model_dir/saved_model.')
flags.mark_flag_as_required('model_dir')
FLAGS = flags.FLAGS


def evaluate(model_dir, num_dequantizations=1, temperature=1.0,
             eval_batches=None, export=False):
  """Evaluates the latest checkpoint in `model_dir`; returns the eval.json dict."""
  config, flow, step = trainer.restore_flow(model_dir)
  evaluator = trainer.Evaluator(flow, tf.distribute.get_strategy())
  draws = num_dequantizations if trainer.is_image_dataset(config.dataset) else 1
  figures = []
  for draw in range(draws):
    test_data = input_pipeline.make_dataset(
        config.dataset, 'test', config.batch_size, seed=config.seed + draw,
        data_dir=config.data_dir, image_size=config.image_size,
        download=config.download, shuffle=False, repeat=False,
        drop_remainder=False)
    if eval_batches:
      test_data = test_data.take(eval_batches)
    figures.append(trainer.mean_nll_to_metric(
        evaluator.mean_nll(test_data), tuple(flow.event_shape), config.dataset))
  name = trainer.metric_name(config.dataset)
  result = {'step': step, f'test_{name}': sum(figures) / len(figures),
            'num_dequantizations': draws, 'temperature': temperature}
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
  result['samples'] = trainer.write_samples(
      flow, config, model_dir, step, writer, temperature=temperature)
  if export:
    from tf_realnvp import export as export_lib  # pylint: disable=g-import-not-at-top
    result['saved_model'] = export_lib.export_saved_model(
        flow, os.path.join(model_dir, 'saved_model'))
  with open(os.path.join(model_dir, 'eval.json'), 'w') as f:
    json.dump(result, f, indent=2)
  return result


def main(argv):
  del argv
  try:
    result = evaluate(FLAGS.model_dir, FLAGS.num_dequantizations,
                      FLAGS.temperature, FLAGS.eval_batches, FLAGS.export)
  except (input_pipeline.DatasetUnavailableError, FileNotFoundError) as error:
    sys.exit(f'error: {error}')
  print(json.dumps(result, indent=2))


if __name__ == '__main__':
  app.run(main)
