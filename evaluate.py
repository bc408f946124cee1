"""Evaluates a trained run: `python evaluate.py --model_dir=runs/cifar10`.

Prints the test bits/dim (images, averaged over several dequantization draws;
with `--importance_samples=K` also the importance-weighted bound of K draws)
or the test NLL in nats (2-D data) of the latest checkpoint (with the averaged
weights if the run used `--ema_decay`) and writes it to `model_dir/eval.json`
and to TensorBoard (`model_dir/eval`); draws a 6x6 sample grid at
`--temperature` (images) or a density plot (2-D), and for images the
paper's manifold of four test images' latents; `--export` writes
`model_dir/saved_model` (`--export_formats`: TFLite and ONNX files too);
every export computes in float32, whatever the run trained in. `-v` and
`-vv` show TensorFlow's logs.

`--score=DATASET` scores every example of DATASET instead (a folder whole,
another dataset's test split) against the run's test split:
`model_dir/scores/NAME.csv` and `.png`, and a JSON summary with the AUROCs
and, with `--score_batch=N`, the typicality test of each batch of N
(`tf_realnvp.evaluation.scoring`).
"""

import sys

from tf_realnvp import console

VERBOSITY, ARGV = console.split_verbosity(sys.argv)
console.quiet(VERBOSITY)  # Before TensorFlow is imported.

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import os

from absl import app
from absl import flags

from tf_realnvp import data
from tf_realnvp import evaluation
from tf_realnvp.config import experiment as experiment_lib

flags.DEFINE_string('model_dir', None, 'The --model_dir of a training run.')
flags.DEFINE_integer(
    'num_dequantizations', None, 'Images: dequantization noise draws to '
    'average over (default: --importance_samples, so that both bounds come '
    'from the same draws; with --score, 1).')
flags.DEFINE_integer(
    'importance_samples', 1, 'Images: with K > 1, also the importance-'
    'weighted bound of K dequantization draws per image (tighter).')
flags.DEFINE_float('temperature', 1.0,
                   'Standard deviation of the base Normal for the samples.')
flags.DEFINE_integer('eval_batches', None,
                     'Test batches to use (default: the whole test split).')
flags.DEFINE_bool('export', False, 'Also write model_dir/saved_model.')
flags.DEFINE_string(
    'score', None, 'Score this dataset (anything --dataset takes; a folder: '
    'every image in it) against the run\'s test split, instead of evaluating.')
flags.DEFINE_integer(
    'score_batch', None, 'With --score: the typicality test of each batch of '
    'this many consecutive examples.')
flags.DEFINE_list('export_formats', [],
                  'Also export as these, any of saved_model (as --export), '
                  'tflite, onnx (pip install -e ".[export]"): '
                  'model_dir/export/{log_prob,decode}.{tflite,onnx}.')
flags.mark_flag_as_required('model_dir')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  portable_formats = [f for f in FLAGS.export_formats if f != 'saved_model']
  if FLAGS.score is not None and (FLAGS.export or FLAGS.export_formats):
    raise experiment_lib.ConfigError(
        '--score scores a dataset and exports nothing: run evaluate.py '
        'without --score to export.')
  # Before evaluating: refuse at once a format unknown or not installed.
  if portable_formats:
    from tf_realnvp.serving import portable  # pylint: disable=g-import-not-at-top
    portable.check_formats(portable_formats)
  # Left unset, each function's own default: evaluate's is
  # --importance_samples, scoring's one draw.
  draws = ({} if FLAGS.num_dequantizations is None
           else dict(num_dequantizations=FLAGS.num_dequantizations))
  if FLAGS.score is not None:
    result = evaluation.scoring.score_run(
        FLAGS.model_dir, FLAGS.score, score_batch=FLAGS.score_batch, **draws)
  else:
    result = evaluation.evaluate(
        FLAGS.model_dir, temperature=FLAGS.temperature,
        eval_batches=FLAGS.eval_batches,
        export=FLAGS.export or 'saved_model' in FLAGS.export_formats,
        importance_samples=FLAGS.importance_samples, **draws)
  if portable_formats:
    experiment, flow, _ = evaluation.restore_flow(FLAGS.model_dir)
    result['export'] = portable.export_portable(
        experiment.float32_flow(flow),
        os.path.join(FLAGS.model_dir, 'export'), portable_formats)
  print(json.dumps(result, indent=2))


# The exit code of each error `main` reports in one line, without traceback.
EXIT_CODES = {
    experiment_lib.ConfigError: 2,
    data.DatasetUnavailableError: 1,
    data.DataError: 1,
    FileNotFoundError: 1,
}

if __name__ == '__main__':
  app.run(console.exit_on_errors(main, EXIT_CODES), argv=ARGV)
