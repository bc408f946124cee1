"""Per-example scores and out-of-distribution tests (`evaluate.py --score`)."""

import csv
import dataclasses
import functools
import json
import math
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tf_realnvp import data as data_lib
from tf_realnvp.config import checks
from tf_realnvp.config import experiment as experiment_lib
from tf_realnvp.config import settings
from tf_realnvp.evaluation import figures
from tf_realnvp.evaluation.evaluator import restore_flow
from tf_realnvp.flows import objective

PNG_COMPRESSION = 9
# Bootstrap batches of the typicality test's null distribution.
TYPICALITY_DRAWS = 9999
SCORE_DOC = ('bits_per_dim - complexity_bits_per_dim (Serra et al. 2020): '
             'larger is more unusual')


@dataclasses.dataclass(frozen=True)
class Scores:
  """Per-example scores of the readable examples; every array is `[N]`.

      from tf_realnvp.evaluation import scoring
      scores = scoring.score(flow, images)   # uint8 [N, H, W, C], or points
      scores.nll                             # [N]: bits/dim, -log2 p(x + u) / D
      scores.complexity                      # [N]: PNG bits/dim of the images
      scores.corrected                       # [N]: the two above, subtracted
      scoring.auroc(scores.corrected, test_scores.corrected)

  The scores, each per example and larger for a more unusual one:

    * `bits_per_dim` (images; `nll_nats` for 2-D points): the model's negative
      log-likelihood `-log2 p(x + u) / D`, averaged over dequantization draws
      `u ~ U[0, 1)^D`. Raw likelihood ranks images simpler than the training
      data (flat colours, SVHN under a CIFAR-10 model) as *more* likely
      (Nalisnick et al. 2019, "Do deep generative models know what they don't
      know?", arXiv 1810.09136).
    * `complexity_bits_per_dim` (images only): `L(x)`, the length in bits of
      the 8-bit image as a PNG file (`tf.io.encode_png`, compression level 9,
      the whole file: signature and chunks included), per dimension.
    * `score`, the default: `bits_per_dim - complexity_bits_per_dim`, i.e.
      `S(x) / D` with `S(x) = -l_M(x) - L(x)` of Serra et al. 2020 ("Input
      complexity and out-of-distribution detection with likelihood-based
      generative models", arXiv 1909.11480, Sec. 3), `l_M(x) = log2 p(x)`
      the model's log-likelihood and `L(x)` the compressed length, in bits:
      `S = log2(p_0(x) / p(x))` for the compressor's `p_0 = 2^-L`, a
      likelihood-ratio statistic, large when the model codes the image worse
      than PNG does. For 2-D points complexity does not apply and `score` is
      `nll_nats`.

  Attributes:
    nll: bits/dim for images, the NLL in nats for 2-D points.
    complexity: PNG bits/dim of the images; None for points.
    index: each scored example's index in what was scored.
    images: the scored images, `uint8 [N, H, W, C]`; None for points.
  """

  nll: np.ndarray
  complexity: Optional[np.ndarray] = None
  index: Optional[np.ndarray] = None
  images: Optional[np.ndarray] = None

  @property
  def corrected(self):
    """The default score, `nll - complexity` (points: `nll`)."""
    return self.nll if self.complexity is None else self.nll - self.complexity

  def __len__(self):
    return len(self.nll)


def png_bits_per_dim(images):
  """`L(x) / D`: each `uint8 [H, W, C]` image's PNG file (compression 9) in
  bits, over its `D = H W C` values; `[N]` for `[N, H, W, C]`."""
  images = np.asarray(images, np.uint8)
  lengths = [len(tf.io.encode_png(image, compression=PNG_COMPRESSION).numpy())
             for image in images]
  return 8. * np.array(lengths, np.float64) / math.prod(images.shape[1:])


def score(model, examples, num_dequantizations=1, seed=0, batch_size=256):
  """Scores `examples` under `model`; returns `Scores` (whose docstring
  defines them).

  The examples pass through the run's stream (`data.split_batches`, in
  order), so a run's test split scored with the run's seed gives the mean
  bits/dim `evaluate.py` reports with the same `num_dequantizations`.

  Args:
    model: a flow, a SavedModel of one (`tf.saved_model.load`), or anything
      with a `log_prob(x)`, or that function itself; `x` float32
      `[batch, *event_shape]` (images: intensities in `[0, 256)`).
    examples: `uint8` images `[N, H, W, C]`, as the run's preprocessing
      stores them (size and channels), or float points `[N, D]`; or a
      `data.Split` (e.g. `experiment.data.read('test')`), whose unreadable
      examples are left out.
    num_dequantizations: images: noise draws to average bits/dim over.
    seed: int; draw `d` is the stream's noise for the seed `seed + d`.
    batch_size: examples per `log_prob` call.

  Raises:
    DataError: none of the examples can be read.
  """
  if not isinstance(examples, data_lib.Split):
    examples = data_lib.Split.in_memory(np.asarray(examples))
  log_prob = tf.function(getattr(model, 'log_prob', model),
                         autograph=False)
  is_image = len(examples.stored_shape) == 3
  total, index, images = 0., [], []
  for draw in range(num_dequantizations if is_image else 1):
    nll = []
    for batch_index, x in data_lib.split_batches(
        examples, batch_size, seed + draw, shuffle=False, repeat=False,
        drop_remainder=False, indices=True):
      nll.append(-log_prob(x).numpy())
      if not draw:
        index.append(batch_index.numpy())
        if is_image:  # The stored pixels: the noise is in [0, 1).
          images.append(np.floor(x.numpy()).astype(np.uint8))
    if not nll:
      raise data_lib.DataError(
          f'None of the {examples.size} examples could be read: are they '
          'PNG or JPEG?')
    total = total + np.concatenate(nll).astype(np.float64)
  index = np.concatenate(index)
  if not is_image:
    return Scores(total, index=index)
  images = np.concatenate(images)
  bits = objective.nats_to_bits_per_dim(total / num_dequantizations,
                                        images.shape[1:])
  return Scores(bits, png_bits_per_dim(images), index, images)


def auroc(outliers, inliers):
  """`P(a > b) + P(a = b) / 2` for `a` in `outliers`, `b` in `inliers`, from
  average ranks (ties share theirs): Mann-Whitney U / (n_out n_in).

  AUROC is `P(s_out > s_in) + P(s_out = s_in) / 2` over pairs of a scored and a
  test example (Mann-Whitney U over `n_out n_in`): 1 when the scored set scores
  above all of the test split, 0.5 when the score does not tell them apart,
  below 0.5 when the scored set looks *more* typical than the test split.
  """
  outliers, inliers = np.ravel(outliers), np.ravel(inliers)
  _, group, counts = np.unique(np.concatenate([outliers, inliers]),
                               return_inverse=True, return_counts=True)
  average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based, per value.
  rank_sum = average_rank[group[:len(outliers)]].sum()
  u = rank_sum - len(outliers) * (len(outliers) + 1) / 2
  return float(u / (len(outliers) * len(inliers)))


def typicality_p_values(nll, reference_nll, batch_size,
                        draws=TYPICALITY_DRAWS, seed=0):
  """The typicality test of each run of `batch_size` consecutive entries of
  `nll` (a last, shorter run is left out):
  `(1 + #{b: |d_b| >= |m - mu|}) / (1 + draws)`, `m` the run's mean, `mu`
  the mean of `reference_nll`, `d_b` the bootstrap differences.

  The typicality test (Nalisnick et al. 2019, "Detecting out-of-distribution
  inputs to deep generative models using typicality", arXiv 1906.02994): a
  batch of M inputs is typical when its mean NLL lies near the model's
  entropy, estimated by the mean NLL of T reference inputs (the paper: the
  training set; here the run's test split). The statistic is
  `|mean_batch NLL - mean_reference NLL|`. Its null distribution is
  bootstrapped: the same difference between a batch of M and a reference of T
  both drawn with replacement from the reference NLLs, so a small reference
  (whose own mean is uncertain) does not make the test reject too often; for
  `T >> M` this is the paper's test. The p-value is the share of the null
  draws at least as large as the statistic.
  """
  reference_nll = np.asarray(reference_nll, np.float64)
  size = len(reference_nll)
  rng = np.random.default_rng(seed)
  null = []
  per_chunk = max(1, 2**22 // (batch_size + size))  # Draws at a time.
  for start in range(0, draws, per_chunk):
    sample = reference_nll[rng.integers(
        0, size, (min(per_chunk, draws - start), batch_size + size))]
    null.append(sample[:, :batch_size].mean(1) - sample[:, batch_size:].mean(1))
  null = np.sort(np.abs(np.concatenate(null)))
  runs = len(nll) // batch_size
  means = np.reshape(nll[:runs * batch_size], (runs, batch_size)).mean(1)
  distances = np.abs(means - reference_nll.mean())
  at_least_as_far = draws - np.searchsorted(null, distances, side='left')
  return ((1 + at_least_as_far) / (1 + draws)).tolist()


def describe_like_the_run(dataset, experiment):
  """The `data.Source` of `dataset`, its images sized and coloured as those
  of the run (its `experiment`) are; `ConfigError` if it does not exist or
  its examples have another shape."""
  shape = experiment.data.event_shape
  image = experiment.data.is_image
  try:
    source = data_lib.describe(
        dataset, image_size=shape[0] if image else None,
        channels=shape[-1] if image else None,
        data_dir=experiment.config.data_dir,
        download=experiment.config.download)
  except ValueError as error:
    raise experiment_lib.ConfigError(f'--score={dataset}: {error}') from None
  if source.event_shape != shape:
    raise experiment_lib.ConfigError(
        f'--score={dataset}: its examples are '
        f'{"x".join(map(str, source.event_shape))}, the run models '
        f'{"x".join(map(str, shape))}: score data of the run\'s kind.')
  return source


def score_run(model_dir, dataset, num_dequantizations=1, score_batch=None):
  """Scores `dataset` under the run in `model_dir`; returns the summary.

  `dataset` is anything `--dataset` takes, read with the run's image size
  and channels: a folder whole (every file, both splits), another dataset's
  test split. Writes `model_dir/scores/NAME.csv` (one row per readable example:
  `id`, the NLL column (`bits_per_dim` or `nll_nats`), `score`,
  `complexity_bits_per_dim`, empty for points) and `NAME.png` (histograms
  of the run's test split's and the scored set's `score`s and, for images,
  the scored images of the lowest and highest score). The summary gives
  the count, the means, `auroc` of `score` against the run's test split,
  `auroc_<nll column>` of the raw NLL, and with `score_batch` the
  typicality p-value of each run of `score_batch` consecutive rows.

  Raises:
    ConfigError: a bad setting (checked before the run is read), a dataset
      that does not exist or does not fit the run (before it is read).
    FileNotFoundError: no run or no checkpoint in `model_dir`.
    DataError: nothing in `dataset` can be read.
  """
  checks.check_evaluation(settings.EvaluationConfig(
      model_dir, num_dequantizations, score=dataset, score_batch=score_batch))
  experiment, flow, step = restore_flow(model_dir)
  config, run_data = experiment.config, experiment.data
  source = describe_like_the_run(dataset, experiment)
  log_prob = flow.log_prob
  if config.conditional:  # The marginal over the classes.
    log_prob = functools.partial(figures.marginal_log_prob, flow,
                                 run_data.num_classes)
  scorer = functools.partial(score, log_prob,
                             num_dequantizations=num_dequantizations,
                             seed=config.seed, batch_size=config.batch_size)
  if source.is_folder:  # Every file, both splits; ids: the paths.
    examples, names = source.read_every_file(), source.paths
  else:
    examples = source.read('test')
    names = range(examples.size)
  _check_score_batch(score_batch, examples.size, dataset)  # Before scoring.
  scored = scorer(examples)
  ids = [names[i] for i in scored.index]
  _check_score_batch(score_batch, len(ids), dataset)  # Without unreadable ones.
  test = scorer(run_data.read('test', strict=config.strict_data))
  name = experiment_lib.run_name(source)
  path = os.path.join(model_dir, 'scores', name)
  column = experiment.metric_name
  _write_csv(path + '.csv', ids, scored, column)
  figures.score_figure(
      path + '.png', test.corrected, scored.corrected, scored.images,
      title=f'{dataset} beside the test split of {model_dir}, step {step}')
  summary = {
      'step': step, 'scored': dataset, 'count': len(ids),
      'skipped': examples.size - len(ids),
      f'mean_{column}': float(scored.nll.mean()),
      'mean_score': float(scored.corrected.mean()),
      'score': SCORE_DOC if run_data.is_image else column,
      'auroc': auroc(scored.corrected, test.corrected),
      f'auroc_{column}': auroc(scored.nll, test.nll),
      f'test_mean_{column}': float(test.nll.mean()),
      'test_mean_score': float(test.corrected.mean()), 'test_count': len(test),
      'num_dequantizations': num_dequantizations if run_data.is_image else 1,
      'csv': path + '.csv', 'figure': path + '.png'}
  if run_data.is_image:
    summary['mean_complexity_bits_per_dim'] = float(scored.complexity.mean())
  if score_batch:
    summary['typicality'] = {
        'batch_size': score_batch, 'statistic': f'mean {column}',
        'p_values': typicality_p_values(scored.nll, test.nll, score_batch,
                                        seed=config.seed)}
  logging.info('Scores: %s', json.dumps(summary))
  return summary


def _check_score_batch(score_batch, count, dataset):
  if score_batch is not None and score_batch > count:
    raise experiment_lib.ConfigError(
        f'--score_batch={score_batch} exceeds the {count} examples read '
        f'from {dataset}.')


def _write_csv(path, ids, scores, column):
  """One row per example: id, the NLL, the score, the complexity (or '')."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  complexity = (scores.complexity if scores.complexity is not None
                else [None] * len(ids))
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['id', column, 'score', 'complexity_bits_per_dim'])
    for row in zip(ids, scores.nll, scores.corrected, complexity):
      writer.writerow([row[0]] + [f'{v:.6f}' if v is not None else ''
                                  for v in row[1:]])
  os.replace(tmp, path)
