from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vma(_message.Message):
    __slots__ = ("start", "end", "perms", "pgoff", "path", "vmflags", "inode", "memfd", "dev")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PERMS_FIELD_NUMBER: _ClassVar[int]
    PGOFF_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VMFLAGS_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    MEMFD_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    perms: str
    pgoff: int
    path: str
    vmflags: str
    inode: int
    memfd: bool
    dev: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., perms: _Optional[str] = ..., pgoff: _Optional[int] = ..., path: _Optional[str] = ..., vmflags: _Optional[str] = ..., inode: _Optional[int] = ..., memfd: _Optional[bool] = ..., dev: _Optional[int] = ...) -> None: ...

class MemfdRun(_message.Message):
    __slots__ = ("offset", "nr_pages")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NR_PAGES_FIELD_NUMBER: _ClassVar[int]
    offset: int
    nr_pages: int
    def __init__(self, offset: _Optional[int] = ..., nr_pages: _Optional[int] = ...) -> None: ...

class Memfd(_message.Message):
    __slots__ = ("dev", "ino", "name", "size", "mode", "uid", "gid", "seals", "runs")
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SEALS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    dev: int
    ino: int
    name: str
    size: int
    mode: int
    uid: int
    gid: int
    seals: int
    runs: _containers.RepeatedCompositeFieldContainer[MemfdRun]
    def __init__(self, dev: _Optional[int] = ..., ino: _Optional[int] = ..., name: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., seals: _Optional[int] = ..., runs: _Optional[_Iterable[_Union[MemfdRun, _Mapping]]] = ...) -> None: ...

class Mm(_message.Message):
    __slots__ = ("pid", "vmas", "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack", "arg_start", "arg_end", "env_start", "env_end", "auxv", "exe", "memfds")
    PID_FIELD_NUMBER: _ClassVar[int]
    VMAS_FIELD_NUMBER: _ClassVar[int]
    START_CODE_FIELD_NUMBER: _ClassVar[int]
    END_CODE_FIELD_NUMBER: _ClassVar[int]
    START_DATA_FIELD_NUMBER: _ClassVar[int]
    END_DATA_FIELD_NUMBER: _ClassVar[int]
    START_BRK_FIELD_NUMBER: _ClassVar[int]
    BRK_FIELD_NUMBER: _ClassVar[int]
    START_STACK_FIELD_NUMBER: _ClassVar[int]
    ARG_START_FIELD_NUMBER: _ClassVar[int]
    ARG_END_FIELD_NUMBER: _ClassVar[int]
    ENV_START_FIELD_NUMBER: _ClassVar[int]
    ENV_END_FIELD_NUMBER: _ClassVar[int]
    AUXV_FIELD_NUMBER: _ClassVar[int]
    EXE_FIELD_NUMBER: _ClassVar[int]
    MEMFDS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    vmas: _containers.RepeatedCompositeFieldContainer[Vma]
    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    brk: int
    start_stack: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    auxv: bytes
    exe: str
    memfds: _containers.RepeatedCompositeFieldContainer[Memfd]
    def __init__(self, pid: _Optional[int] = ..., vmas: _Optional[_Iterable[_Union[Vma, _Mapping]]] = ..., start_code: _Optional[int] = ..., end_code: _Optional[int] = ..., start_data: _Optional[int] = ..., end_data: _Optional[int] = ..., start_brk: _Optional[int] = ..., brk: _Optional[int] = ..., start_stack: _Optional[int] = ..., arg_start: _Optional[int] = ..., arg_end: _Optional[int] = ..., env_start: _Optional[int] = ..., env_end: _Optional[int] = ..., auxv: _Optional[bytes] = ..., exe: _Optional[str] = ..., memfds: _Optional[_Iterable[_Union[Memfd, _Mapping]]] = ...) -> None: ...

class PageRun(_message.Message):
    __slots__ = ("vaddr", "nr_pages")
    VADDR_FIELD_NUMBER: _ClassVar[int]
    NR_PAGES_FIELD_NUMBER: _ClassVar[int]
    vaddr: int
    nr_pages: int
    def __init__(self, vaddr: _Optional[int] = ..., nr_pages: _Optional[int] = ...) -> None: ...

class PageMap(_message.Message):
    __slots__ = ("pid", "runs", "inherited", "pages", "pages_at")
    PID_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    INHERITED_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    PAGES_AT_FIELD_NUMBER: _ClassVar[int]
    pid: int
    runs: _containers.RepeatedCompositeFieldContainer[PageRun]
    inherited: _containers.RepeatedCompositeFieldContainer[PageRun]
    pages: str
    pages_at: int
    def __init__(self, pid: _Optional[int] = ..., runs: _Optional[_Iterable[_Union[PageRun, _Mapping]]] = ..., inherited: _Optional[_Iterable[_Union[PageRun, _Mapping]]] = ..., pages: _Optional[str] = ..., pages_at: _Optional[int] = ...) -> None: ...
