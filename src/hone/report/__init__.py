"""Reports of a run: console (rich) and JSON."""

from hone.report.console import render, render_text
from hone.report.json import to_json, write_json

__all__ = ["render", "render_text", "to_json", "write_json"]
