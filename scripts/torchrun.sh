#!/usr/bin/env bash
# Multi-node (or single-node) `evf fit` under torchrun. Run the same command on every node; only NODE_RANK differs.
# torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT; Lightning's TorchElasticEnvironment reads them,
# so the trainer's num_nodes and devices are set here from the same numbers torchrun gets.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS_PER_NODE=8 scripts/torchrun.sh \
#       --config configs/experiments/refcoco_evf_sam_h.yaml --trainer configs/trainer/deepspeed_zero2_multinode.yaml
#
# Extra arguments go to `evf fit`. A resumed job passes --ckpt_path runs/<exp>/<run>/checkpoints/last.ckpt.
set -euo pipefail
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
GPUS_PER_NODE="${GPUS_PER_NODE:-$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"

exec torchrun \
    --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$GPUS_PER_NODE" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m evf_lightning.cli fit "$@" --trainer.num_nodes "$NNODES" --trainer.devices "$GPUS_PER_NODE"
