"""Data: from dataset rows to the token ids and labels the trainer sees.

Owns reading sources and rows (`rows`, `values`), rendering a row (`examples`) with a prompt format
(`prompts`: ft's formats; `instruct`: axolotl's instruction types; `jinja`: named and custom Jinja
chat templates, `templates/`; `renderers`: which format renders what), the Jinja chat templates
saved with the tokenizer (`chat_templates`), encoding segments into ids and labels (`tokens`),
packing (`packing`), the preparation pipeline with its cache (`pipeline`), and the text metrics of
generations (`metrics`). Takes a loaded tokenizer; never loads weights.

May import: `ft.config`, `ft.base`.
"""
