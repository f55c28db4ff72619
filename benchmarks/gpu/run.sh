#!/usr/bin/env bash
# The prepared device-machine script of issue 7: CUDA checks, the CUDA path of every training
# stage at the smoke preset (also under torchrun/NCCL), and the batched-inference and
# train-throughput benchmarks with and without bf16 (and channels_last). Run from the repository
# root on a GPU machine: `bash benchmarks/gpu/run.sh OUT_DIR`. Everything lands in OUT_DIR.
set -u
OUT=${1:?usage: run.sh OUT_DIR}
mkdir -p "$OUT/bench" "$OUT/runs"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
step() { echo; echo "=== $* ($(date +%T))"; }

step environment
nvidia-smi -L; $PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name(0))"

step cuda checks
$PY benchmarks/gpu/cuda_checks.py

for prec in fp32 bf16; do
  for layout in "" "--channels-last"; do
    tag=$prec${layout:+-cl}
    step "batched-inference --quick $prec $layout"
    $PY -m instanas_core bench batched-inference --quick --device cuda --precision $prec $layout --out "$OUT/bench/$tag-quick"
    step "train-throughput --quick $prec $layout"
    $PY -m instanas_core bench train-throughput --quick --device cuda --precision $prec $layout --out "$OUT/bench/$tag-quick"
  done
  step "batched-inference + train-throughput, width 1.0, $prec"
  $PY -m instanas_core bench batched-inference --device cuda --precision $prec --out "$OUT/bench/$prec-full"
  $PY -m instanas_core bench train-throughput --device cuda --precision $prec --out "$OUT/bench/$prec-full"
done

step "routed-latency --quick on cuda"
$PY -m instanas_core bench routed-latency --quick --device cuda --out "$OUT/bench/routed-quick"

step "smoke stages on cuda"
R=$OUT/runs/smoke-cuda
for s in pretrain search finetune evaluate; do
  $PY -m instanas_core $s --preset smoke --device cuda --run-dir $R --quiet || echo "STAGE $s FAILED rc=$?"
done
step "torchrun (NCCL, 1 process) pretrain on cuda"
$PY -m torch.distributed.run --standalone --nproc-per-node=1 -m instanas_core pretrain --preset smoke --device cuda \
  --run-dir $OUT/runs/smoke-nccl --quiet || echo "TORCHRUN FAILED rc=$?"
step done
