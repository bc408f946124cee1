#!/usr/bin/env bash
# The GPU check, under 10 minutes on one GPU: what BENCHMARKS.md's GPU
# section needs, from a checkout with the package installed
# (pip install -e .):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default gpu_check_results
#   QUICK=1 bash benchmarks/gpu_check.sh /tmp/gc  # the same steps, tiny, on a CPU
#
# 1. The benchmark's rows for the paper's CIFAR-10 RealNVP: float32 and
#    mixed_bfloat16, XLA off and on (OUT_DIR/benchmark/benchmark.md).
# 2. The train step's profile in both precisions (OUT_DIR/step_profile/).
# 3. 300 steps of train.py on mock CIFAR-10 (tensorflow-datasets' random
#    images: no download) with MirroredStrategy over every GPU, its samples
#    and its precision line (OUT_DIR/run/, OUT_DIR/train.log).
# 4. The paper's CIFAR-10 RealNVP (8 blocks of 64 filters, batch 64) trained
#    for 1000 steps on benchmarks.quality's real photographs (no download):
#    train.py's image default (mixed_bfloat16) beside Glow steps, with and
#    without variational dequantization, test bits/dim at 250 to 1000 steps
#    and seconds per step (OUT_DIR/quality/quality.md). Bits/dim of other
#    images than CIFAR-10's, whose marks are the paper's 3.49, Glow's 3.35,
#    NSF's 3.38.
# 5. Training memory with activations recomputed (--recompute): the paper's
#    model at 4 and 16 residual blocks, batch 64, mixed_bfloat16 under XLA,
#    each mode's peak GPU memory and speed (OUT_DIR/memory/benchmark.md).
# Prints what each step wrote; stops at the first failure.
set -euo pipefail

out="${1:-gpu_check_results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv \
  > "$out/gpus.csv" 2>/dev/null || echo "no nvidia-smi" > "$out/gpus.csv"
cat "$out/gpus.csv"

if [[ "${QUICK:-0}" == 1 ]]; then
  benchmark=(--quick)
  profile=(--model=tiny --image_size=8 --batch_size=2 --steps=1)
  run=(--train_steps=4 --batch_size=8 --num_res_blocks=1 --num_filters=4
       --eval_every=4 --eval_batches=1)
  examples=16
  quality=(--num_res_blocks=1 --num_filters=4 --batch_size=4 --eval_at=2,4
           --test_patches=16)
  memory=(--quick --res_blocks=1,2)
else
  benchmark=(--models=cifar10 --timed_calls=5)
  profile=(--model=cifar10)
  run=(--train_steps=300 --batch_size=64 --eval_every=300 --eval_batches=4)
  examples=2048
  quality=(--num_res_blocks=8 --num_filters=64 --batch_size=64
           --eval_at=250,500,1000)
  memory=(--models=cifar10 --res_blocks=4,16 --batch_size=64 --timed_calls=3)
fi

python -m benchmarks.benchmark "${benchmark[@]}" --flows=realnvp \
  --precisions=float32,mixed_bfloat16 --xla=false,true \
  --out_dir="$out/benchmark"

python -m benchmarks.step_profile "${profile[@]}" \
  --precisions=float32,mixed_bfloat16 --out_dir="$out/step_profile"

# train.py under tfds.testing.mock_data, so no download is needed.
python - "$examples" --dataset=cifar10 --model_dir="$out/run" \
  --strategy=mirrored "${run[@]}" <<'EOF' 2>&1 | tee "$out/train.log"
import sys
import tensorflow_datasets as tfds
examples = int(sys.argv.pop(1))
sys.argv[0] = 'train.py'
import train
from absl import app
train.define_flags()
with tfds.testing.mock_data(num_examples=examples):
  app.run(train.main, argv=train.ARGV, flags_parser=train.parse_flags)
EOF

python -m benchmarks.quality "${quality[@]}" --seeds=0 \
  --configs=mixed_bfloat16,glow,glow_variational --out_dir="$out/quality"

python -m benchmarks.benchmark "${memory[@]}" --flows=realnvp \
  --precisions=mixed_bfloat16 --xla=true \
  --recompute=none,networks,invertible --out_dir="$out/memory"

echo "wrote: $out/benchmark/benchmark.md $out/step_profile/step_profile.md" \
  "$out/run/samples/ $out/train.log $out/quality/quality.md" \
  "$out/memory/benchmark.md"
