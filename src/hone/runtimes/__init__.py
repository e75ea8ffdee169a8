"""Runtimes turn a model Artifact into a Runner. One file per runtime; the registry
(hone.registry.RUNTIMES) finds it, so a new runtime is one new file."""
