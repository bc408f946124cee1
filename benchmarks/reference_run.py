r"""Trains the PyTorch reference RealNVP on batches that `benchmarks.quality` wrote.

    REFERENCE_PYTHON benchmarks/reference_run.py --reference_dir=DIR \
        --data=batches.npz --out=reference.json [model and optimizer flags]

Runs in the reference's own virtual environment (PyTorch, NumPy; no
TensorFlow, nothing of this package): `benchmarks.quality` starts it as a
subprocess. `DIR` is a checkout of github.com/chrischute/real-nvp prepared as
BENCHMARKS.md says. The model, the loss and the optimizer are the reference's
own (`RealNVP`, `RealNVPLoss`, Adam over `util.get_param_groups` with weight
decay on the weight-norm gains, `util.clip_grad_norm`), as its `train.py`
uses them. Two things differ from its `train.py`, both so that the two
implementations see the same numbers:

- the batches are the ones in `--data`, already dequantized (`(k + u) / 256`
  with the noise `benchmarks.quality` drew), so the model's own dequantization
  noise is replaced by that draw; the logit that follows is the reference's;
- test bits/dim is measured with the model in `eval()` mode (batch-norm
  running averages), on the test patches of `--data`, at `--eval_at` steps.

Writes `{"bits_per_dim": {step: value}, "seconds_per_step": s,
"parameters": n}` to `--out`. At each evaluation it saves its whole state
(weights, Adam, results so far) to `--out` + `.state`, and a run started again
with the same flags goes on from there, so a long run survives being stopped.
"""

import argparse
import json
import math
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reference_dir', required=True)
  parser.add_argument('--data', required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--num_scales', type=int, default=2)
  parser.add_argument('--num_blocks', type=int, default=4)
  parser.add_argument('--mid_channels', type=int, default=32)
  parser.add_argument('--learning_rate', type=float, default=1e-3)
  parser.add_argument('--weight_decay', type=float, default=5e-5)
  parser.add_argument('--max_grad_norm', type=float, default=100.)
  parser.add_argument('--eval_at', default='100,200,400')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--threads', type=int, default=0,
                      help='torch threads; 0 keeps PyTorch\'s default.')
  return parser.parse_args()


def logit_of_dequantized(self, y):
  """The reference's `_pre_process` without its noise: `y` is `(k + u) / 256`."""
  y = (2 * y - 1) * self.data_constraint
  y = (y + 1) / 2
  y = y.log() - (1. - y).log()
  ldj = (F.softplus(y) + F.softplus(-y) - F.softplus(
      (1. - self.data_constraint).log() - self.data_constraint.log()))
  return y, ldj.reshape(ldj.size(0), -1).sum(-1)


def main():
  args = parse_args()
  sys.path.insert(0, args.reference_dir)
  from models import RealNVP  # pylint: disable=import-outside-toplevel
  from models import RealNVPLoss
  import util  # pylint: disable=import-outside-toplevel

  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  data = np.load(args.data)
  # NHWC (the TensorFlow layout of the file) to NCHW.
  train = torch.from_numpy(data['train']).permute(0, 1, 4, 2, 3)
  test = torch.from_numpy(data['test']).permute(0, 3, 1, 2)
  channels = train.shape[2]
  dims = math.prod(test.shape[1:])

  net = RealNVP(num_scales=args.num_scales, in_channels=channels,
                mid_channels=args.mid_channels, num_blocks=args.num_blocks)
  net._pre_process = types.MethodType(logit_of_dequantized, net)  # pylint: disable=protected-access
  loss_fn = RealNVPLoss()
  optimizer = torch.optim.Adam(
      util.get_param_groups(net, args.weight_decay, norm_suffix='weight_g'),
      lr=args.learning_rate)
  eval_at = sorted(int(s) for s in args.eval_at.split(','))

  def test_bits_per_dim():
    net.eval()
    with torch.no_grad():
      nll = sum(float(loss_fn(*net(batch))) * len(batch)
                for batch in torch.split(test, 64))
    net.train()
    return nll / len(test) / (dims * math.log(2.))

  result = {'bits_per_dim': {}, 'parameters': sum(
      p.numel() for p in net.parameters() if p.requires_grad)}
  step_seconds = []
  state_path = args.out + '.state'
  run_flags = {k: v for k, v in vars(args).items()
               if k not in ('data', 'out', 'threads')}
  first_step = 1
  if os.path.exists(state_path):
    state = torch.load(state_path, weights_only=False)
    if state['flags'] == run_flags:
      net.load_state_dict(state['net'])
      optimizer.load_state_dict(state['optimizer'])
      result, step_seconds = state['result'], state['step_seconds']
      first_step = state['step'] + 1
      print(f'reference resumed after step {state["step"]}', flush=True)
  net.train()
  for step in range(first_step, eval_at[-1] + 1):
    start = time.perf_counter()
    optimizer.zero_grad()
    loss = loss_fn(*net(train[step - 1]))
    loss.backward()
    util.clip_grad_norm(optimizer, args.max_grad_norm)
    optimizer.step()
    step_seconds.append(time.perf_counter() - start)
    if step in eval_at:
      result['bits_per_dim'][step] = test_bits_per_dim()
      print(f'reference step {step}: test bits/dim '
            f'{result["bits_per_dim"][step]:.4f}', flush=True)
      torch.save(dict(flags=run_flags, step=step, net=net.state_dict(),
                      optimizer=optimizer.state_dict(), result=result,
                      step_seconds=step_seconds), state_path + '.tmp')
      os.replace(state_path + '.tmp', state_path)
  result['seconds_per_step'] = float(np.median(step_seconds[1:]))
  with open(args.out, 'w') as f:
    json.dump(result, f)
  os.remove(state_path)


if __name__ == '__main__':
  main()
