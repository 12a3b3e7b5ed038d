from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Mount(_message.Message):
    __slots__ = ("mountpoint", "fstype", "source", "flags", "data")
    MOUNTPOINT_FIELD_NUMBER: _ClassVar[int]
    FSTYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    mountpoint: str
    fstype: str
    source: str
    flags: int
    data: str
    def __init__(self, mountpoint: _Optional[str] = ..., fstype: _Optional[str] = ..., source: _Optional[str] = ..., flags: _Optional[int] = ..., data: _Optional[str] = ...) -> None: ...

class Namespace(_message.Message):
    __slots__ = ("kind", "id", "creator", "hostname", "domainname", "lo_up", "private", "mounts", "outer", "last_pid")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    DOMAINNAME_FIELD_NUMBER: _ClassVar[int]
    LO_UP_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    OUTER_FIELD_NUMBER: _ClassVar[int]
    LAST_PID_FIELD_NUMBER: _ClassVar[int]
    kind: int
    id: int
    creator: int
    hostname: str
    domainname: str
    lo_up: bool
    private: bool
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    outer: _containers.RepeatedScalarFieldContainer[str]
    last_pid: int
    def __init__(self, kind: _Optional[int] = ..., id: _Optional[int] = ..., creator: _Optional[int] = ..., hostname: _Optional[str] = ..., domainname: _Optional[str] = ..., lo_up: _Optional[bool] = ..., private: _Optional[bool] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., outer: _Optional[_Iterable[str]] = ..., last_pid: _Optional[int] = ...) -> None: ...

class Namespaces(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[Namespace]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[Namespace, _Mapping]]] = ...) -> None: ...
