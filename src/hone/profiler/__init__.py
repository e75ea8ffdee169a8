"""Where the time goes: per-op FLOPs, bytes and time against this machine's measured roofline."""
