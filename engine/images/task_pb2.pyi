from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Creds(_message.Message):
    __slots__ = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups", "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb", "securebits")
    UID_FIELD_NUMBER: _ClassVar[int]
    EUID_FIELD_NUMBER: _ClassVar[int]
    SUID_FIELD_NUMBER: _ClassVar[int]
    FSUID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    EGID_FIELD_NUMBER: _ClassVar[int]
    SGID_FIELD_NUMBER: _ClassVar[int]
    FSGID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    CAP_INH_FIELD_NUMBER: _ClassVar[int]
    CAP_PRM_FIELD_NUMBER: _ClassVar[int]
    CAP_EFF_FIELD_NUMBER: _ClassVar[int]
    CAP_BND_FIELD_NUMBER: _ClassVar[int]
    CAP_AMB_FIELD_NUMBER: _ClassVar[int]
    SECUREBITS_FIELD_NUMBER: _ClassVar[int]
    uid: int
    euid: int
    suid: int
    fsuid: int
    gid: int
    egid: int
    sgid: int
    fsgid: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    securebits: int
    def __init__(self, uid: _Optional[int] = ..., euid: _Optional[int] = ..., suid: _Optional[int] = ..., fsuid: _Optional[int] = ..., gid: _Optional[int] = ..., egid: _Optional[int] = ..., sgid: _Optional[int] = ..., fsgid: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ..., cap_inh: _Optional[int] = ..., cap_prm: _Optional[int] = ..., cap_eff: _Optional[int] = ..., cap_bnd: _Optional[int] = ..., cap_amb: _Optional[int] = ..., securebits: _Optional[int] = ...) -> None: ...

class Rlimit(_message.Message):
    __slots__ = ("resource", "cur", "max")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    CUR_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    resource: int
    cur: int
    max: int
    def __init__(self, resource: _Optional[int] = ..., cur: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class SeccompFilter(_message.Message):
    __slots__ = ("program", "flags")
    PROGRAM_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    program: bytes
    flags: int
    def __init__(self, program: _Optional[bytes] = ..., flags: _Optional[int] = ...) -> None: ...

class ThreadAttrs(_message.Message):
    __slots__ = ("tid", "creds", "no_new_privs", "personality", "seccomp")
    TID_FIELD_NUMBER: _ClassVar[int]
    CREDS_FIELD_NUMBER: _ClassVar[int]
    NO_NEW_PRIVS_FIELD_NUMBER: _ClassVar[int]
    PERSONALITY_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_FIELD_NUMBER: _ClassVar[int]
    tid: int
    creds: Creds
    no_new_privs: bool
    personality: int
    seccomp: _containers.RepeatedCompositeFieldContainer[SeccompFilter]
    def __init__(self, tid: _Optional[int] = ..., creds: _Optional[_Union[Creds, _Mapping]] = ..., no_new_privs: _Optional[bool] = ..., personality: _Optional[int] = ..., seccomp: _Optional[_Iterable[_Union[SeccompFilter, _Mapping]]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("pid", "creds", "rlimits", "personality", "no_new_privs", "dumpable", "pdeathsig", "thp_disable", "robust_list", "robust_len", "clear_tid", "seccomp_mode", "seccomp", "threads")
    PID_FIELD_NUMBER: _ClassVar[int]
    CREDS_FIELD_NUMBER: _ClassVar[int]
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    PERSONALITY_FIELD_NUMBER: _ClassVar[int]
    NO_NEW_PRIVS_FIELD_NUMBER: _ClassVar[int]
    DUMPABLE_FIELD_NUMBER: _ClassVar[int]
    PDEATHSIG_FIELD_NUMBER: _ClassVar[int]
    THP_DISABLE_FIELD_NUMBER: _ClassVar[int]
    ROBUST_LIST_FIELD_NUMBER: _ClassVar[int]
    ROBUST_LEN_FIELD_NUMBER: _ClassVar[int]
    CLEAR_TID_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_MODE_FIELD_NUMBER: _ClassVar[int]
    SECCOMP_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    creds: Creds
    rlimits: _containers.RepeatedCompositeFieldContainer[Rlimit]
    personality: int
    no_new_privs: bool
    dumpable: int
    pdeathsig: int
    thp_disable: int
    robust_list: int
    robust_len: int
    clear_tid: int
    seccomp_mode: int
    seccomp: _containers.RepeatedCompositeFieldContainer[SeccompFilter]
    threads: _containers.RepeatedCompositeFieldContainer[ThreadAttrs]
    def __init__(self, pid: _Optional[int] = ..., creds: _Optional[_Union[Creds, _Mapping]] = ..., rlimits: _Optional[_Iterable[_Union[Rlimit, _Mapping]]] = ..., personality: _Optional[int] = ..., no_new_privs: _Optional[bool] = ..., dumpable: _Optional[int] = ..., pdeathsig: _Optional[int] = ..., thp_disable: _Optional[int] = ..., robust_list: _Optional[int] = ..., robust_len: _Optional[int] = ..., clear_tid: _Optional[int] = ..., seccomp_mode: _Optional[int] = ..., seccomp: _Optional[_Iterable[_Union[SeccompFilter, _Mapping]]] = ..., threads: _Optional[_Iterable[_Union[ThreadAttrs, _Mapping]]] = ...) -> None: ...
