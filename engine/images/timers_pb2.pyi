from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ITimer(_message.Message):
    __slots__ = ("value_us", "interval_us", "pending")
    VALUE_US_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_US_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    value_us: int
    interval_us: int
    pending: bool
    def __init__(self, value_us: _Optional[int] = ..., interval_us: _Optional[int] = ..., pending: _Optional[bool] = ...) -> None: ...

class PosixTimer(_message.Message):
    __slots__ = ("id", "clock", "notify", "signo", "value", "target", "armed", "value_ns", "interval_ns", "overrun", "pending")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_FIELD_NUMBER: _ClassVar[int]
    SIGNO_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARMED_FIELD_NUMBER: _ClassVar[int]
    VALUE_NS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_NS_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    id: int
    clock: int
    notify: int
    signo: int
    value: int
    target: int
    armed: bool
    value_ns: int
    interval_ns: int
    overrun: int
    pending: bool
    def __init__(self, id: _Optional[int] = ..., clock: _Optional[int] = ..., notify: _Optional[int] = ..., signo: _Optional[int] = ..., value: _Optional[int] = ..., target: _Optional[int] = ..., armed: _Optional[bool] = ..., value_ns: _Optional[int] = ..., interval_ns: _Optional[int] = ..., overrun: _Optional[int] = ..., pending: _Optional[bool] = ...) -> None: ...

class Timers(_message.Message):
    __slots__ = ("real", "virt", "prof", "posix", "taken_ns", "boot_id", "pid")
    REAL_FIELD_NUMBER: _ClassVar[int]
    VIRT_FIELD_NUMBER: _ClassVar[int]
    PROF_FIELD_NUMBER: _ClassVar[int]
    POSIX_FIELD_NUMBER: _ClassVar[int]
    TAKEN_NS_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    real: ITimer
    virt: ITimer
    prof: ITimer
    posix: _containers.RepeatedCompositeFieldContainer[PosixTimer]
    taken_ns: int
    boot_id: str
    pid: int
    def __init__(self, real: _Optional[_Union[ITimer, _Mapping]] = ..., virt: _Optional[_Union[ITimer, _Mapping]] = ..., prof: _Optional[_Union[ITimer, _Mapping]] = ..., posix: _Optional[_Iterable[_Union[PosixTimer, _Mapping]]] = ..., taken_ns: _Optional[int] = ..., boot_id: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...
