"""The base: what every layer of ft may import, and that imports nothing of ft above it.

Owns the exception types (`errors`), library chatter control (`quiet`), secret redaction
(`redact`), signal handling (`signals`), file modes that follow the umask (`perms`) and the host's
memory (`host`). Imports only the standard library.
"""
