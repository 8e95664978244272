"""Answers and logits from llama.cpp itself (llama-cpp-python), for `make verify-gguf`.

Runs in llama-cpp-python's own virtual environment and imports nothing of ft:

    LLAMA_PYTHON scripts/llama_answers.py MODEL.gguf [LORA.gguf] < requests.json > answers.json

The request holds `questions` (each asked as one user turn through llama-cpp-python's chat
completion, which renders the chat template stored in the GGUF file: the training format), greedy,
at most `max_tokens`; and `prompts` (token ids) whose next-token logits are returned. That the
chat template comes from the file is part of what is checked.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from llama_cpp import Llama

    request = json.load(sys.stdin)
    lora = sys.argv[2] if len(sys.argv) > 2 else None
    llm = Llama(
        model_path=sys.argv[1], lora_path=lora, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0
    )
    answers = []
    for question in request["questions"]:
        reply = llm.create_chat_completion(
            messages=[{"role": "user", "content": question}],
            max_tokens=request["max_tokens"],
            temperature=0.0,
            top_k=1,
        )
        answers.append(reply["choices"][0]["message"]["content"].strip())
    logits = []
    for ids in request["prompts"]:
        llm.reset()
        llm.eval(ids)
        logits.append([float(x) for x in llm.scores[len(ids) - 1]])
    json.dump({"answers": answers, "logits": logits, "chat_format": llm.chat_format}, sys.stdout)


if __name__ == "__main__":
    main()
