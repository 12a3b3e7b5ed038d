"""cdefs by topic, one module per header family, each with INCLUDES and CDEF.

native/ffi_build.py loads them by file (importing the `native` package needs the
compiled module, which does not exist yet at build time)."""
TOPICS = ["process", "syscalls", "ptrace", "plan", "remote", "kcmp", "bpf", "pages", "spin", "fds"]
