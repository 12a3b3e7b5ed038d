"""ckpt: our parasite-less checkpoint/restore engine (work in progress: see README)."""
