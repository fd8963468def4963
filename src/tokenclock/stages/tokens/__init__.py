"""The tokens stage: a byte-level BPE (tokenizer.py) and the token streams every later stage reads."""
