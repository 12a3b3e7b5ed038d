"""Fuzzing process-tree shapes: scripts, the builder's runs, shrinking, planner experiments."""
