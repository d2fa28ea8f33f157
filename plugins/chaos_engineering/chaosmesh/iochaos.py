"""The `spec` of an IOChaos: latency, errors, wrong attributes or wrong data on a volume's file operations."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import Field, Strict

from chaos_engineering.chaosmesh.scalars import GoDuration, Int64, UInt16, UInt32, UInt64
from chaos_engineering.chaosmesh.selectors import ChaosMeshModel, ContainerChaosSpec
from chaos_engineering.chaosmesh.spec_issues import SPEC_ROOT, Rule, SpecIssue, child


class IOChaosAction(str, enum.Enum):
    LATENCY = "latency"
    FAULT = "fault"
    ATTR_OVERRIDE = "attrOverride"
    MISTAKE = "mistake"


class IoMethod(str, enum.Enum):
    """File-system calls Chaos Mesh can hook (api/v1alpha1 IoMethod); the CRD leaves them a plain
    string, but a misspelt one would make the fault never fire."""

    LOOKUP = "lookup"
    FORGET = "forget"
    GETATTR = "getattr"
    SETATTR = "setattr"
    READLINK = "readlink"
    MKNOD = "mknod"
    MKDIR = "mkdir"
    UNLINK = "unlink"
    RMDIR = "rmdir"
    SYMLINK = "symlink"
    RENAME = "rename"
    LINK = "link"
    OPEN = "open"
    READ = "read"
    WRITE = "write"
    FLUSH = "flush"
    RELEASE = "release"
    FSYNC = "fsync"
    OPENDIR = "opendir"
    READDIR = "readdir"
    RELEASEDIR = "releasedir"
    FSYNCDIR = "fsyncdir"
    STATFS = "statfs"
    SETXATTR = "setxattr"
    GETXATTR = "getxattr"
    LISTXATTR = "listxattr"
    REMOVEXATTR = "removexattr"
    ACCESS = "access"
    CREATE = "create"
    GETLK = "getlk"
    SETLK = "setlk"
    BMAP = "bmap"


class FileType(str, enum.Enum):
    """`attr.kind` values (api/v1alpha1 FileType)."""

    NAMED_PIPE = "namedPipe"
    CHAR_DEVICE = "charDevice"
    BLOCK_DEVICE = "blockDevice"
    DIRECTORY = "directory"
    REGULAR_FILE = "regularFile"
    SYMLINK = "symlink"
    SOCKET = "socket"


class Filling(str, enum.Enum):
    ZERO = "zero"
    RANDOM = "random"


class Timespec(ChaosMeshModel):
    sec: Int64
    nsec: Int64


class AttrOverrideSpec(ChaosMeshModel):
    """File attributes reported instead of the real ones; integer widths are Chaos Mesh's Go types."""

    ino: UInt64 | None = None
    size: UInt64 | None = None
    blocks: UInt64 | None = None
    atime: Timespec | None = None
    mtime: Timespec | None = None
    ctime: Timespec | None = None
    kind: Annotated[FileType, Strict(False)] | None = None
    perm: UInt16 | None = None
    nlink: UInt32 | None = None
    uid: UInt32 | None = None
    gid: UInt32 | None = None
    rdev: UInt32 | None = None


class MistakeSpec(ChaosMeshModel):
    filling: Annotated[Filling, Strict(False)] | None = None
    maxOccurrences: Annotated[Int64, Field(ge=1)] | None = None
    maxLength: Annotated[Int64, Field(ge=1)] | None = None


class IOChaosSpec(ContainerChaosSpec):
    action: Annotated[IOChaosAction, Strict(False)]
    volumePath: str  # mount path of the volume the fault applies to
    path: str | None = None  # glob of the affected files, e.g. /var/run/etcd/**/*
    methods: list[Annotated[IoMethod, Strict(False)]] | None = None
    percent: Annotated[int, Field(ge=0, le=100)] | None = None  # share of calls hit; Chaos Mesh's default 100
    delay: GoDuration | None = None
    errno: UInt32 | None = None
    attr: AttrOverrideSpec | None = None
    mistake: MistakeSpec | None = None

    @classmethod
    def cross_field_issues(cls, raw: dict[str, Any]) -> list[SpecIssue]:
        issues = super().cross_field_issues(raw)
        action = raw.get("action")
        if not isinstance(action, str):
            return issues
        # The webhook only rejects errno 0 for fault; the others are ours: without their block
        # the fault is injected but changes nothing, which a run would misread as resilience.
        requirement = _REQUIREMENTS.get(action)
        if requirement is not None:
            name, message = requirement
            if not raw.get(name):
                issues.append(SpecIssue(child(SPEC_ROOT, name), Rule.ACTION_REQUIRES, message))
        return issues


_REQUIREMENTS = {
    IOChaosAction.LATENCY.value: ("delay", "action 'latency' needs delay: how long each call waits, e.g. \"100ms\"."),
    IOChaosAction.FAULT.value: ("errno", "action 'fault' needs a non-zero errno: the error calls return, e.g. 5 (EIO)."),
    IOChaosAction.ATTR_OVERRIDE.value: ("attr", "action 'attrOverride' needs attr: the attributes to report, e.g. {perm: 72}."),
    IOChaosAction.MISTAKE.value: (
        "mistake",
        "action 'mistake' needs mistake: what wrong data to return, e.g. {filling: zero, maxOccurrences: 1, maxLength: 10}.",
    ),
}
