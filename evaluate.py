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

from tf_realnvp import config as config_lib
from tf_realnvp import data
from tf_realnvp import evaluation
from tf_realnvp.config import checks
from tf_realnvp.config import command_line
from tf_realnvp.config import experiment as experiment_lib

command_line.define_flags(config_lib.EvaluationConfig)
flags.adopt_module_key_flags(command_line)  # In --help.
flags.mark_flag_as_required('model_dir')


def main(argv):
  del argv
  config = command_line.config_from_flags(config_lib.EvaluationConfig)
  checks.check_evaluation(config)
  portable_formats = [f for f in config.export_formats if f != 'saved_model']
  # Before evaluating: refuse at once a format unknown or not installed.
  if portable_formats:
    from tf_realnvp.serving import portable  # pylint: disable=g-import-not-at-top
    portable.check_formats(portable_formats)
  # Left unset, each function's own default: evaluate's is
  # --importance_samples, scoring's one draw.
  draws = ({} if config.num_dequantizations is None
           else dict(num_dequantizations=config.num_dequantizations))
  if config.score is not None:
    result = evaluation.scoring.score_run(
        config.model_dir, config.score, score_batch=config.score_batch,
        **draws)
  else:
    result = evaluation.evaluate(
        config.model_dir, temperature=config.temperature,
        eval_batches=config.eval_batches,
        export=config.export or 'saved_model' in config.export_formats,
        importance_samples=config.importance_samples, **draws)
  if portable_formats:
    experiment, flow, _ = evaluation.restore_flow(config.model_dir)
    result['export'] = portable.export_portable(
        experiment.float32_flow(flow),
        os.path.join(config.model_dir, 'export'), portable_formats)
  print(json.dumps(result, indent=2))


# The exit code of each error `main` reports in one line, without traceback.
EXIT_CODES = {
    experiment_lib.ConfigError: command_line.USAGE_ERROR,
    data.DatasetUnavailableError: 1,
    data.DataError: 1,
    FileNotFoundError: 1,
}

if __name__ == '__main__':
  app.run(console.exit_on_errors(main, EXIT_CODES), argv=ARGV,
          flags_parser=command_line.parse_flags)
