"""Passes of the torch ecosystem."""
