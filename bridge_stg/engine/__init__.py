"""Training and evaluation engine: configuration, distributed training (torch / DeepSpeed), checkpoints, logging."""
