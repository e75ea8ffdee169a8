"""Timing: Measurement (raw times, lazy stats), timers, memory, stability rules."""
