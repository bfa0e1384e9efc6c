"""The process around the engine: kopf, leader election, /metrics, signals."""
