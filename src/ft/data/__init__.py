"""Data: from dataset rows to the token ids and labels the trainer sees.

Owns reading sources and rows (`rows`), rendering a row (`examples`) with a prompt format
(`prompts`), the Jinja chat templates saved with the tokenizer (`chat_templates`), encoding
segments into ids and labels (`tokens`), packing (`packing`), and the preparation pipeline with
its cache (`pipeline`). Takes a loaded tokenizer; never loads weights.

May import: `ft.config`, `ft.base`.
"""
