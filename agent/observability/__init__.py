"""Seeing what the agent does: metrics, progress lines, status socket, top, Prometheus, CloudWatch."""
