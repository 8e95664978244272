"""Models: everything that turns a config into a loaded model or tokenizer, shared by the stages.

Owns precision and quantization settings (`precision`), base-model loading and the Hub/offline
rules (`loading`), the tokenizer loader (`tokenizer`), GGUF reading (`gguf`) and the LoRA adapter
(`adapter`).

May import: `ft.data`, `ft.config`, `ft.base`. Used by train, infer, export and plan.
"""
