"""Triton Lambda Gateway: an HTTPS front door for NVIDIA Triton Inference Server."""
