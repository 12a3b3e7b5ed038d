"""Threads that keep the other CPUs busy while a tree is frozen (native/spin.c)."""

INCLUDES = """
#include "spin.c"
"""

CDEF = """
int ckpt_spin_start(const int *cpus, int ncpus, long limit_ms);
void ckpt_spin_stop(void);
"""
