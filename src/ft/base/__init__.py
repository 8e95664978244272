"""The base: what every layer of ft may import, and that imports nothing of ft above it.

Owns the exception types (`errors`), library chatter control (`quiet`), secret redaction
(`redact`), signal handling (`signals`) and file modes that follow the umask (`perms`). Imports only the standard library.
"""
