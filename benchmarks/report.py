"""The benchmark's Markdown report and the ratios it highlights."""

from benchmarks import models

FLOP_COUNTING = (
    'FLOPs per image are counted by hand from the architecture '
    '(benchmarks/flops.py): 2*H*W*k^2*Cin*Cout per convolution, summed over '
    'every coupling network of one log_prob; sampling runs the same networks; '
    'a train step counts 3x the forward pass (input and weight gradients). '
    'Cross-check: TF\'s graph profiler (tf.compat.v1.profiler, '
    'float_operation) on the traced log_prob and train-step graphs, divided '
    'by their batch sizes; it also counts elementwise ops, the optimizer '
    'update, and each network TFP\'s Glow traces twice (once for the '
    'transform, once for the log-det; XLA merges the copies, plain TF runs '
    'both). Shares of the ceiling use the hand count, the work the model '
    'needs. The ceiling is the better of two measurements of a large '
    'matmul\'s FLOP/s in the row\'s own process, before and after the row: '
    'float32 for float32 rows, bfloat16 for mixed_bfloat16 rows.')

_COLUMNS = (
    'model', 'flow', 'blocks', 'params', 'GFLOP/img', 'precision', 'XLA',
    'recompute', 'ceiling GFLOP/s', 'train img/s', 'train % ceiling',
    'log_prob img/s', 'log_prob % ceiling', 'sample latency (s)',
    'train compile (s)', 'train peak MiB', 'train MiB at start',
    'train peak RSS MiB')
_XLA = {False: 'XLA off', True: 'XLA on'}


def ratios(rows):
  """Speed-ups of train images/s: bfloat16, XLA, and RealNVP over Glow; and
  what recomputing costs in train-step time and saves in peak memory."""
  speed = {(r['model'], r['flow'], r['precision'], r['xla']):
           r['train']['images_per_s'] for r in rows if _as_built(r)}
  found = _recompute_ratios(rows)

  def add(name, numerator, denominator):
    if numerator in speed and denominator in speed:
      found[name] = speed[numerator] / speed[denominator]

  for model, flow in dict.fromkeys(key[:2] for key in speed):
    for xla in (False, True):
      add(f'{model} {flow}: mixed_bfloat16 / float32, {_XLA[xla]}',
          (model, flow, 'mixed_bfloat16', xla), (model, flow, 'float32', xla))
    for precision in models.PRECISIONS:
      add(f'{model} {flow}: XLA on / off, {precision}',
          (model, flow, precision, True), (model, flow, precision, False))
  for model in dict.fromkeys(key[0] for key in speed):
    for precision in models.PRECISIONS:
      for xla in (False, True):
        add(f'{model}: RealNVP / Glow, {precision}, {_XLA[xla]}',
            (model, 'realnvp', precision, xla), (model, 'glow', precision, xla))
  return found


def markdown(result):
  """The report as Markdown: machine, one row per setting, ratios, FLOPs."""
  machine = result['machine']
  settings = result['settings']
  gpu = f', GPU: {machine["gpu"]}' if machine['gpu'] else ''
  lines = [
      f'### {machine["cpu"]} ({machine["cpu_cores"]} cores){gpu}',
      '',
      f'{machine["date"]}; TensorFlow {machine["tensorflow"]}, TFP '
      f'{machine["tensorflow_probability"]}, Keras {machine["keras"]}; '
      f'device {machine["device"]}.',
      '',
      f'Command: `{result["command"]}`',
      '',
      f'Ceiling: {settings["matmul_size"]}^2 matmul. Batches: train '
      f'{settings["batch_size"]}, log_prob {settings["log_prob_batch_size"]}, '
      f'sample {settings["num_samples"]} images; '
      f'{settings["image_size"]}x{settings["image_size"]}x3 images.',
      '',
      '| ' + ' | '.join(_COLUMNS) + ' |',
      '|' + '---|' * len(_COLUMNS),
  ]
  for row in result['results']:
    cells = (
        row['model'], row['flow'], str(row.get('num_res_blocks') or '-'),
        f'{row["parameters"] / 1e6:.2f}M',
        f'{row["forward_flops_per_image"] / 1e9:.3g}', row['precision'],
        'on' if row['xla'] else 'off', row['recompute'],
        f'{row["ceiling_flops_per_s"] / 1e9:.0f}',
        f'{row["train"]["images_per_s"]:.2f}',
        f'{100 * row["train"]["share_of_ceiling"]:.0f}%',
        f'{row["log_prob"]["images_per_s"]:.2f}',
        f'{100 * row["log_prob"]["share_of_ceiling"]:.0f}%',
        f'{row["sample"]["seconds"]:.3f}',
        f'{row["train"]["compile_s"]:.1f}',
        f'{row["train"]["peak_tensor_mib"]:.4g}',
        f'{row["train"]["resident_tensor_mib"]:.4g}',
        f'{row["train"]["peak_rss_mib"] or 0:.4g}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', 'Ratios:', '']
  lines += [f'- {name}: {value:.2f}x'
            for name, value in result['ratios'].items()]
  lines += ['', 'FLOPs per image, by hand and by TF\'s profiler '
            '(log_prob; train step):', '']
  counted = {}
  for row in result['results']:
    counted.setdefault((row['model'], row['flow']), row)
  for (model, flow), row in counted.items():
    hand = row['forward_flops_per_image']
    profiled = row['profiled_flops_per_image']
    lines.append(
        f'- {model} {flow} ({row["architecture"]}): hand {hand / 1e9:.4g} '
        f'GFLOP; profiler {profiled["log_prob"] / 1e9:.4g} GFLOP '
        f'({profiled["log_prob"] / hand:.3f}x); train step: hand '
        f'{3 * hand / 1e9:.4g}, profiler {profiled["train"] / 1e9:.4g} GFLOP '
        f'({profiled["train"] / hand:.2f}x forward)')
  lines += ['', result['flop_counting'], '']
  return '\n'.join(lines)


def _as_built(row):
  """Whether a row measures its model as named: its own depth, nothing
  recomputed (TFP's Glow rows always)."""
  return row['flow'] != 'realnvp' or (
      row['recompute'] == 'none' and row['num_res_blocks'] ==
      models.ARCHITECTURES[row['model']]['num_res_blocks'])


def _recompute_ratios(rows):
  """Train-step time and peak TensorFlow memory of each recompute mode, as a
  fraction of the same row with `recompute='none'`."""
  def key(row):
    return (row['model'], row['num_res_blocks'], row['precision'], row['xla'])

  kept = {key(r): r for r in rows
          if r['flow'] == 'realnvp' and r['recompute'] == 'none'}
  found = {}
  for row in rows:
    base = kept.get(key(row)) if row['flow'] == 'realnvp' else None
    if base is None or row['recompute'] == 'none':
      continue
    name = (f'{row["model"]} {row["num_res_blocks"]} blocks '
            f'{row["precision"]} {_XLA[row["xla"]]}: {row["recompute"]} / '
            'none')
    found[f'{name}, train-step time'] = (base['train']['images_per_s']
                                         / row['train']['images_per_s'])
    if base['train']['peak_tensor_mib']:
      found[f'{name}, peak MiB'] = (row['train']['peak_tensor_mib']
                                    / base['train']['peak_tensor_mib'])
    if _allocated(base['train']):
      found[f'{name}, MiB beyond the start'] = (
          _allocated(row['train']) / _allocated(base['train']))
  return found


def _allocated(figures):
  """MiB a phase allocated beyond what it started with (the weights, the
  optimizer's slots): activations, gradients, temporaries."""
  return figures['peak_tensor_mib'] - figures['resident_tensor_mib']
