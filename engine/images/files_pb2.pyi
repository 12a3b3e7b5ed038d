from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Fd(_message.Message):
    __slots__ = ("fd", "cloexec", "path", "flags", "pos", "mode", "unlinked", "dup", "dup_of", "pipe", "size", "extents", "link", "kernel", "memfd", "dev", "ino", "shared")
    FD_FIELD_NUMBER: _ClassVar[int]
    CLOEXEC_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    POS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UNLINKED_FIELD_NUMBER: _ClassVar[int]
    DUP_FIELD_NUMBER: _ClassVar[int]
    DUP_OF_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    EXTENTS_FIELD_NUMBER: _ClassVar[int]
    LINK_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    MEMFD_FIELD_NUMBER: _ClassVar[int]
    DEV_FIELD_NUMBER: _ClassVar[int]
    INO_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    fd: int
    cloexec: bool
    path: str
    flags: int
    pos: int
    mode: int
    unlinked: bool
    dup: bool
    dup_of: int
    pipe: int
    size: int
    extents: _containers.RepeatedCompositeFieldContainer[Extent]
    link: str
    kernel: KernelFd
    memfd: bool
    dev: int
    ino: int
    shared: int
    def __init__(self, fd: _Optional[int] = ..., cloexec: _Optional[bool] = ..., path: _Optional[str] = ..., flags: _Optional[int] = ..., pos: _Optional[int] = ..., mode: _Optional[int] = ..., unlinked: _Optional[bool] = ..., dup: _Optional[bool] = ..., dup_of: _Optional[int] = ..., pipe: _Optional[int] = ..., size: _Optional[int] = ..., extents: _Optional[_Iterable[_Union[Extent, _Mapping]]] = ..., link: _Optional[str] = ..., kernel: _Optional[_Union[KernelFd, _Mapping]] = ..., memfd: _Optional[bool] = ..., dev: _Optional[int] = ..., ino: _Optional[int] = ..., shared: _Optional[int] = ...) -> None: ...

class KernelFd(_message.Message):
    __slots__ = ("pidfd_pid", "ns", "ns_ours", "ns_pid")
    PIDFD_PID_FIELD_NUMBER: _ClassVar[int]
    NS_FIELD_NUMBER: _ClassVar[int]
    NS_OURS_FIELD_NUMBER: _ClassVar[int]
    NS_PID_FIELD_NUMBER: _ClassVar[int]
    pidfd_pid: int
    ns: str
    ns_ours: bool
    ns_pid: int
    def __init__(self, pidfd_pid: _Optional[int] = ..., ns: _Optional[str] = ..., ns_ours: _Optional[bool] = ..., ns_pid: _Optional[int] = ...) -> None: ...

class Extent(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class RemovedDir(_message.Message):
    __slots__ = ("mode", "uid", "gid")
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    mode: int
    uid: int
    gid: int
    def __init__(self, mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class Files(_message.Message):
    __slots__ = ("pid", "fds", "cwd", "root", "umask", "cwd_removed")
    PID_FIELD_NUMBER: _ClassVar[int]
    FDS_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    CWD_REMOVED_FIELD_NUMBER: _ClassVar[int]
    pid: int
    fds: _containers.RepeatedCompositeFieldContainer[Fd]
    cwd: str
    root: str
    umask: int
    cwd_removed: RemovedDir
    def __init__(self, pid: _Optional[int] = ..., fds: _Optional[_Iterable[_Union[Fd, _Mapping]]] = ..., cwd: _Optional[str] = ..., root: _Optional[str] = ..., umask: _Optional[int] = ..., cwd_removed: _Optional[_Union[RemovedDir, _Mapping]] = ...) -> None: ...

class PipeData(_message.Message):
    __slots__ = ("id", "size", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: int
    size: int
    data: bytes
    def __init__(self, id: _Optional[int] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
