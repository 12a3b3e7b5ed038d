"""Tasks grouped by a resource they share, by kcmp(2), sorted in C (native/kcmp.c)."""

INCLUDES = """
#include "kcmp.c"
"""

CDEF = """
int ckpt_kcmp_groups(int *pids, int n, int type, int *group);
"""
