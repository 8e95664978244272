"""Export: a run's adapter folded into full weights, and the model written for other tools.

Owns `ft merge` (`merge`: in memory, verified against base+adapter), the tensor-by-tensor
streaming merge (`merge_stream`), and `ft export --gguf` (`gguf_export`: the command; `gguf_arch`:
architectures, hyper-parameters, tensor names; `gguf_vocab`: the tokenizer as metadata;
`gguf_write`: tensor-by-tensor writing; `gguf_lora`: the adapter alone; `gguf_verify`: read-back
and logits; `modelfile`: the Ollama Modelfile).

May import: `ft.models`, `ft.runs`, `ft.data`, `ft.config`, `ft.base`; no other stage, never `ft.cli`.
"""
