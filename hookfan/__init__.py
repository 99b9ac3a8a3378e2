"""hookfan: a durable webhook fan-out proxy for Kubernetes."""

__version__ = "0.1.0"
