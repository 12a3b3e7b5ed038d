"""A task's fds read in one call (native/fds.c): links, stat and fdinfo flags and position."""

INCLUDES = """
#include "fds.c"
"""

CDEF = """
#define CKPT_FD_LINK ...

struct ckpt_fd {
    int fd;
    int link_len;
    uint32_t flags;
    uint64_t pos;
    uint32_t mode;
    uint64_t dev, ino, nlink, size;
    char link[...];
};

int ckpt_read_fds(int pid, struct ckpt_fd *out, int max);
"""
