"""Passes transform a model (torch module or ONNX file) on the way to a runtime.

One file per pass, grouped by ecosystem (torch/, onnx/, ...). A new pass is one new file: the
registry (hone.registry.PASSES) finds it.
"""
