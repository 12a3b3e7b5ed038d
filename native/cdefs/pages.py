"""A small task's pages stored in one call (native/pages.c): scan, read and write in C."""

INCLUDES = """
#include "pages.c"
"""

CDEF = """
#define CKPT_PAGES_SCAN ...
#define CKPT_PAGES_PAGEMAP ...
#define CKPT_PAGES_MEM ...
#define CKPT_PAGES_FILE ...
#define CKPT_PAGES_RUNS ...
#define CKPT_PAGES_ALLOC ...

struct ckpt_area {
    uint64_t start, end;
    int readable;
    int file_private;
};

struct ckpt_pages {
    int err;
    int step;
    uint64_t addr;
    uint64_t nruns;
    uint64_t bytes;
};

int ckpt_store_pages(int pid, int pagemap, int mem, const struct ckpt_area *areas, int nareas,
                     const char *path, int out, uint64_t *runs, uint64_t max_runs, struct ckpt_pages *res);
"""
