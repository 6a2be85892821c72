"""Tamiyo: distributed RL over Kafka for a GNN morphogenetic-training controller."""

__version__ = "0.1.0"
