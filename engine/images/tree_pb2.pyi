from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskEntry(_message.Message):
    __slots__ = ("pid", "ppid", "pgid", "sid", "zombie", "status", "subreaper", "stopped", "nspids", "tids", "sig_blocked", "sig_ignored", "sig_caught", "comm", "ns_flags", "nspgids", "nssids", "stop_collected", "vfork_child", "vfork_signal", "files_of_parent")
    PID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    PGID_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    ZOMBIE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SUBREAPER_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    NSPIDS_FIELD_NUMBER: _ClassVar[int]
    TIDS_FIELD_NUMBER: _ClassVar[int]
    SIG_BLOCKED_FIELD_NUMBER: _ClassVar[int]
    SIG_IGNORED_FIELD_NUMBER: _ClassVar[int]
    SIG_CAUGHT_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    NS_FLAGS_FIELD_NUMBER: _ClassVar[int]
    NSPGIDS_FIELD_NUMBER: _ClassVar[int]
    NSSIDS_FIELD_NUMBER: _ClassVar[int]
    STOP_COLLECTED_FIELD_NUMBER: _ClassVar[int]
    VFORK_CHILD_FIELD_NUMBER: _ClassVar[int]
    VFORK_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    FILES_OF_PARENT_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ppid: int
    pgid: int
    sid: int
    zombie: bool
    status: int
    subreaper: bool
    stopped: int
    nspids: _containers.RepeatedScalarFieldContainer[int]
    tids: _containers.RepeatedScalarFieldContainer[int]
    sig_blocked: int
    sig_ignored: int
    sig_caught: int
    comm: str
    ns_flags: int
    nspgids: _containers.RepeatedScalarFieldContainer[int]
    nssids: _containers.RepeatedScalarFieldContainer[int]
    stop_collected: bool
    vfork_child: int
    vfork_signal: int
    files_of_parent: bool
    def __init__(self, pid: _Optional[int] = ..., ppid: _Optional[int] = ..., pgid: _Optional[int] = ..., sid: _Optional[int] = ..., zombie: _Optional[bool] = ..., status: _Optional[int] = ..., subreaper: _Optional[bool] = ..., stopped: _Optional[int] = ..., nspids: _Optional[_Iterable[int]] = ..., tids: _Optional[_Iterable[int]] = ..., sig_blocked: _Optional[int] = ..., sig_ignored: _Optional[int] = ..., sig_caught: _Optional[int] = ..., comm: _Optional[str] = ..., ns_flags: _Optional[int] = ..., nspgids: _Optional[_Iterable[int]] = ..., nssids: _Optional[_Iterable[int]] = ..., stop_collected: _Optional[bool] = ..., vfork_child: _Optional[int] = ..., vfork_signal: _Optional[int] = ..., files_of_parent: _Optional[bool] = ...) -> None: ...

class Tree(_message.Message):
    __slots__ = ("tasks", "outer_sid", "outer_pgid")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OUTER_SID_FIELD_NUMBER: _ClassVar[int]
    OUTER_PGID_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskEntry]
    outer_sid: int
    outer_pgid: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskEntry, _Mapping]]] = ..., outer_sid: _Optional[int] = ..., outer_pgid: _Optional[int] = ...) -> None: ...
