"""The base: what every layer of ft may import, and that imports nothing of ft above it.

Owns the exception types (`errors`), library chatter control (`quiet`), secret redaction
(`redact`) and signal handling (`signals`). Imports only the standard library.
"""
