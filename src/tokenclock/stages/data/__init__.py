"""The data stages: corpus (documents split by document into train/val) and tokens (a byte-level
BPE and the token streams every later stage reads)."""
