#!/usr/bin/env bash
# Launch verl GRPO/RLOO on a Qwen2.5-VL captioner with the CapRL reward served by `caprl reward serve`.
#
#   recipes/verl/run.sh image data/caprl-qa            [extra hydra overrides ...]
#   recipes/verl/run.sh video data/video-qa            trainer.n_gpus_per_node=4
#
# Needs, in the environment that runs verl: verl (`pip install 'caprl[verl]'`, its own virtualenv: verl pins
# transformers < 5.11) and caprl importable (the reward function is loaded as pkg://caprl.verl.reward).
# The reward service runs wherever the reader GPUs are; by default this script starts one locally.
#
# Environment: CAPRL_READER (reader model, default Qwen/Qwen2.5-3B-Instruct), CAPRL_REWARD_URLS (comma-separated
# URLs of running services; when set, none is started), CAPRL_POLICY (policy model), PYTHON (default python3).
set -euo pipefail

MODALITY=${1:?usage: run.sh image|video DATASET_DIR [hydra overrides...]}
DATASET=${2:?usage: run.sh image|video DATASET_DIR [hydra overrides...]}
shift 2
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
case "$MODALITY" in
  image) CONFIG=caprl_qwen2_5_vl_image ;;
  video) CONFIG=caprl_qwen2_5_vl_video ;;
  *) echo "modality must be image or video, got $MODALITY" >&2; exit 2 ;;
esac

# 1. Our dataset in verl's parquet layout (images embedded, absolute video paths, ground truth per row).
export CAPRL_TRAIN_PARQUET=${CAPRL_TRAIN_PARQUET:-$DATASET.verl.parquet}
if [ ! -f "$CAPRL_TRAIN_PARQUET" ]; then
  caprl data export --to verl "$DATASET" --out "$CAPRL_TRAIN_PARQUET"
fi

# 2. The reward service (one per reader GPU in production; put their URLs in CAPRL_REWARD_URLS and start each with
#    the same settings). The reward's settings are the service's, as with CapRL++'s servers: 8 questions per
#    caption (REWARD_QA_NUM) and, for videos, the timestamp-format term at 0.2 (FORMAT_REWARD_WEIGHT).
SERVE_SETTINGS=(--n 8)
if [ "$MODALITY" = video ]; then
  SERVE_SETTINGS+=(--timestamp-weight 0.2 --modality video)
fi
if [ -z "${CAPRL_REWARD_URLS:-}" ]; then
  caprl reward serve --reader "${CAPRL_READER:-Qwen/Qwen2.5-3B-Instruct}" "${SERVE_SETTINGS[@]}" \
    --host 127.0.0.1 --port 18889 &
  SERVICE_PID=$!
  trap 'kill "$SERVICE_PID" 2>/dev/null || true' EXIT
  export CAPRL_REWARD_URLS=http://127.0.0.1:18889
  until curl -sf "$CAPRL_REWARD_URLS/health" >/dev/null; do
    kill -0 "$SERVICE_PID" 2>/dev/null || { echo "the reward service exited" >&2; exit 1; }
    sleep 2
  done
fi

# 3. verl's PPO trainer with our config (it extends verl's ppo_trainer).
"$PYTHON" -m verl.trainer.main_ppo --config-path="$HERE" --config-name="$CONFIG" "$@"
