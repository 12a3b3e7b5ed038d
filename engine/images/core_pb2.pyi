from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Regs(_message.Message):
    __slots__ = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")
    R15_FIELD_NUMBER: _ClassVar[int]
    R14_FIELD_NUMBER: _ClassVar[int]
    R13_FIELD_NUMBER: _ClassVar[int]
    R12_FIELD_NUMBER: _ClassVar[int]
    RBP_FIELD_NUMBER: _ClassVar[int]
    RBX_FIELD_NUMBER: _ClassVar[int]
    R11_FIELD_NUMBER: _ClassVar[int]
    R10_FIELD_NUMBER: _ClassVar[int]
    R9_FIELD_NUMBER: _ClassVar[int]
    R8_FIELD_NUMBER: _ClassVar[int]
    RAX_FIELD_NUMBER: _ClassVar[int]
    RCX_FIELD_NUMBER: _ClassVar[int]
    RDX_FIELD_NUMBER: _ClassVar[int]
    RSI_FIELD_NUMBER: _ClassVar[int]
    RDI_FIELD_NUMBER: _ClassVar[int]
    ORIG_RAX_FIELD_NUMBER: _ClassVar[int]
    RIP_FIELD_NUMBER: _ClassVar[int]
    CS_FIELD_NUMBER: _ClassVar[int]
    EFLAGS_FIELD_NUMBER: _ClassVar[int]
    RSP_FIELD_NUMBER: _ClassVar[int]
    SS_FIELD_NUMBER: _ClassVar[int]
    FS_BASE_FIELD_NUMBER: _ClassVar[int]
    GS_BASE_FIELD_NUMBER: _ClassVar[int]
    DS_FIELD_NUMBER: _ClassVar[int]
    ES_FIELD_NUMBER: _ClassVar[int]
    FS_FIELD_NUMBER: _ClassVar[int]
    GS_FIELD_NUMBER: _ClassVar[int]
    r15: int
    r14: int
    r13: int
    r12: int
    rbp: int
    rbx: int
    r11: int
    r10: int
    r9: int
    r8: int
    rax: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    orig_rax: int
    rip: int
    cs: int
    eflags: int
    rsp: int
    ss: int
    fs_base: int
    gs_base: int
    ds: int
    es: int
    fs: int
    gs: int
    def __init__(self, r15: _Optional[int] = ..., r14: _Optional[int] = ..., r13: _Optional[int] = ..., r12: _Optional[int] = ..., rbp: _Optional[int] = ..., rbx: _Optional[int] = ..., r11: _Optional[int] = ..., r10: _Optional[int] = ..., r9: _Optional[int] = ..., r8: _Optional[int] = ..., rax: _Optional[int] = ..., rcx: _Optional[int] = ..., rdx: _Optional[int] = ..., rsi: _Optional[int] = ..., rdi: _Optional[int] = ..., orig_rax: _Optional[int] = ..., rip: _Optional[int] = ..., cs: _Optional[int] = ..., eflags: _Optional[int] = ..., rsp: _Optional[int] = ..., ss: _Optional[int] = ..., fs_base: _Optional[int] = ..., gs_base: _Optional[int] = ..., ds: _Optional[int] = ..., es: _Optional[int] = ..., fs: _Optional[int] = ..., gs: _Optional[int] = ...) -> None: ...

class SigAction(_message.Message):
    __slots__ = ("sig", "handler", "flags", "restorer", "mask")
    SIG_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    RESTORER_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    sig: int
    handler: int
    flags: int
    restorer: int
    mask: int
    def __init__(self, sig: _Optional[int] = ..., handler: _Optional[int] = ..., flags: _Optional[int] = ..., restorer: _Optional[int] = ..., mask: _Optional[int] = ...) -> None: ...

class SigAltStack(_message.Message):
    __slots__ = ("sp", "flags", "size")
    SP_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sp: int
    flags: int
    size: int
    def __init__(self, sp: _Optional[int] = ..., flags: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class Rseq(_message.Message):
    __slots__ = ("ptr", "size", "sig")
    PTR_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    ptr: int
    size: int
    sig: int
    def __init__(self, ptr: _Optional[int] = ..., size: _Optional[int] = ..., sig: _Optional[int] = ...) -> None: ...

class PendingSignal(_message.Message):
    __slots__ = ("shared", "siginfo")
    SHARED_FIELD_NUMBER: _ClassVar[int]
    SIGINFO_FIELD_NUMBER: _ClassVar[int]
    shared: bool
    siginfo: bytes
    def __init__(self, shared: _Optional[bool] = ..., siginfo: _Optional[bytes] = ...) -> None: ...

class Thread(_message.Message):
    __slots__ = ("tid", "regs", "xstate", "blocked", "pending", "altstack", "rseq", "clear_tid", "robust_list", "robust_len", "comm", "nstids", "cpus")
    TID_FIELD_NUMBER: _ClassVar[int]
    REGS_FIELD_NUMBER: _ClassVar[int]
    XSTATE_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    ALTSTACK_FIELD_NUMBER: _ClassVar[int]
    RSEQ_FIELD_NUMBER: _ClassVar[int]
    CLEAR_TID_FIELD_NUMBER: _ClassVar[int]
    ROBUST_LIST_FIELD_NUMBER: _ClassVar[int]
    ROBUST_LEN_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    NSTIDS_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    tid: int
    regs: Regs
    xstate: bytes
    blocked: int
    pending: _containers.RepeatedCompositeFieldContainer[PendingSignal]
    altstack: SigAltStack
    rseq: Rseq
    clear_tid: int
    robust_list: int
    robust_len: int
    comm: str
    nstids: _containers.RepeatedScalarFieldContainer[int]
    cpus: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tid: _Optional[int] = ..., regs: _Optional[_Union[Regs, _Mapping]] = ..., xstate: _Optional[bytes] = ..., blocked: _Optional[int] = ..., pending: _Optional[_Iterable[_Union[PendingSignal, _Mapping]]] = ..., altstack: _Optional[_Union[SigAltStack, _Mapping]] = ..., rseq: _Optional[_Union[Rseq, _Mapping]] = ..., clear_tid: _Optional[int] = ..., robust_list: _Optional[int] = ..., robust_len: _Optional[int] = ..., comm: _Optional[str] = ..., nstids: _Optional[_Iterable[int]] = ..., cpus: _Optional[_Iterable[int]] = ...) -> None: ...

class Core(_message.Message):
    __slots__ = ("pid", "ppid", "pgid", "sid", "comm", "regs", "xstate", "sigactions", "blocked", "altstack", "rseq", "pending", "threads", "cpus", "main_exited", "main_status")
    PID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    PGID_FIELD_NUMBER: _ClassVar[int]
    SID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    REGS_FIELD_NUMBER: _ClassVar[int]
    XSTATE_FIELD_NUMBER: _ClassVar[int]
    SIGACTIONS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    ALTSTACK_FIELD_NUMBER: _ClassVar[int]
    RSEQ_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MAIN_EXITED_FIELD_NUMBER: _ClassVar[int]
    MAIN_STATUS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    regs: Regs
    xstate: bytes
    sigactions: _containers.RepeatedCompositeFieldContainer[SigAction]
    blocked: int
    altstack: SigAltStack
    rseq: Rseq
    pending: _containers.RepeatedCompositeFieldContainer[PendingSignal]
    threads: _containers.RepeatedCompositeFieldContainer[Thread]
    cpus: _containers.RepeatedScalarFieldContainer[int]
    main_exited: bool
    main_status: int
    def __init__(self, pid: _Optional[int] = ..., ppid: _Optional[int] = ..., pgid: _Optional[int] = ..., sid: _Optional[int] = ..., comm: _Optional[str] = ..., regs: _Optional[_Union[Regs, _Mapping]] = ..., xstate: _Optional[bytes] = ..., sigactions: _Optional[_Iterable[_Union[SigAction, _Mapping]]] = ..., blocked: _Optional[int] = ..., altstack: _Optional[_Union[SigAltStack, _Mapping]] = ..., rseq: _Optional[_Union[Rseq, _Mapping]] = ..., pending: _Optional[_Iterable[_Union[PendingSignal, _Mapping]]] = ..., threads: _Optional[_Iterable[_Union[Thread, _Mapping]]] = ..., cpus: _Optional[_Iterable[int]] = ..., main_exited: _Optional[bool] = ..., main_status: _Optional[int] = ...) -> None: ...
