"""Planning, isolated execution and selection of candidates."""
