"""The corpus stage: documents from the configured sources, split by document into train/val."""
