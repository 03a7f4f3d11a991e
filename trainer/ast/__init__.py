"""AST: Asymmetric Student-Teacher anomaly detection (network, losses, training, family)."""
