from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vma(_message.Message):
    __slots__ = ("start", "end", "perms", "pgoff", "path", "vmflags")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PERMS_FIELD_NUMBER: _ClassVar[int]
    PGOFF_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VMFLAGS_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    perms: str
    pgoff: int
    path: str
    vmflags: str
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., perms: _Optional[str] = ..., pgoff: _Optional[int] = ..., path: _Optional[str] = ..., vmflags: _Optional[str] = ...) -> None: ...

class Mm(_message.Message):
    __slots__ = ("pid", "vmas")
    PID_FIELD_NUMBER: _ClassVar[int]
    VMAS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    vmas: _containers.RepeatedCompositeFieldContainer[Vma]
    def __init__(self, pid: _Optional[int] = ..., vmas: _Optional[_Iterable[_Union[Vma, _Mapping]]] = ...) -> None: ...

class PageRun(_message.Message):
    __slots__ = ("vaddr", "nr_pages")
    VADDR_FIELD_NUMBER: _ClassVar[int]
    NR_PAGES_FIELD_NUMBER: _ClassVar[int]
    vaddr: int
    nr_pages: int
    def __init__(self, vaddr: _Optional[int] = ..., nr_pages: _Optional[int] = ...) -> None: ...
