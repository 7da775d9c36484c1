"""The safety kernel: what every destructive operation goes through, written once.

Tools build on it; it imports no tool. `kernel` runs the flow (validate, check the token, ask the
human, consume, re-check, execute, classify, audit; the registry scrubs and translates); `plans` holds plans and
tokens, `human` the question, `outcome` the per-item accounting, `text` the fences, `errors` the
words for API failures, `audit` and `redact` the record without secrets.
"""
