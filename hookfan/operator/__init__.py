"""The operator process: RequestClones (Kubernetes API or files) -> route table in Redis."""
