"""Passes of the OpenVINO ecosystem: torch -> OpenVINO IR, then NNCF quantization of the IR."""
