"""Workstation export: trained run -> ONNX graph -> parity-gated, self-checking bundle.

Imports edge_ad and trainer (torch); never imported by the device runtime.
"""
