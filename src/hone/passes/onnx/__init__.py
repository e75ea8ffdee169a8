"""Passes of the onnx ecosystem."""
