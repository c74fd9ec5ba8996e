"""Python gRPC stubs for etcd's v3 API, generated on this machine from etcd's own .proto files.

Why generate: the PyPI etcd clients are unmaintained, break on current protobuf, lack TLS, or speak
the HTTP gateway, which cannot authenticate by certificate CN (see lab/etcd/__init__.py). The protos
come from the go.etcd.io/etcd/api/v3 module at the pinned etcd version (Go module cache); nothing
generated is committed. Their gogoproto / versionpb / HTTP-gateway annotations only steer Go and
gateway code generation and do not change the wire format, so they are dropped before protoc runs:
option statements with a parenthesised name, `[(…)]` field options and the imports they need.

Output: <src_dir>/etcd-api-py-<version>/labetcdapi/{authpb,mvccpb,etcdserverpb}/…_pb2(_grpc).py,
written into a temp dir and renamed into place, so a crash never leaves half a package.
"""

from __future__ import annotations

import importlib
import re
import shutil
import sys
import uuid
from pathlib import Path
from types import ModuleType

from lab import gomod
from lab.config import Settings
from lab.errors import LabError

API_MODULE = "go.etcd.io/etcd/api/v3"
#: Top-level Python package of the generated code; not "etcd", which a PyPI package may own.
PACKAGE = "labetcdapi"
#: The protos lab needs, in the module's layout; rpc.proto imports the other two.
PROTOS = ("authpb/auth.proto", "mvccpb/kv.proto", "etcdserverpb/rpc.proto")
_DROPPED_IMPORTS = ("gogoproto/", "google/api/", "protoc-gen-openapiv2/", "etcd/api/versionpb/")


def strip_annotations(text: str) -> str:
    """The proto source without code-generation annotations and with lab's package path."""
    text = re.sub(r"//[^\n]*", "", text)  # comments hold brackets and braces
    out: list[str] = []
    i = 0
    while i < len(text):
        m = re.compile(r"option\s*\(").search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        # Skip to the `;` that ends the statement at brace depth 0 (values may be { … } blocks).
        depth, j = 0, m.end()
        while j < len(text):
            c = text[j]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == ";" and depth == 0:
                break
            j += 1
        i = j + 1
    text = "".join(out)
    text = re.sub(r"\s*\[\s*\([^\]]*\]", "", text)  # field / enum value options
    lines = [
        ln
        for ln in text.splitlines()
        if not (ln.strip().startswith("import ") and any(d in ln for d in _DROPPED_IMPORTS))
    ]
    return "\n".join(lines).replace('"etcd/api/', f'"{PACKAGE}/') + "\n"


def stubs_dir(settings: Settings) -> Path:
    return settings.src_dir / f"etcd-api-py-{settings.versions.etcd}"


def generate(settings: Settings) -> Path:
    """Generate the stubs once per etcd version; return the directory to put on sys.path."""
    out = stubs_dir(settings)
    if (out / PACKAGE / "etcdserverpb" / "rpc_pb2_grpc.py").is_file():
        return out
    try:
        from grpc_tools import protoc
    except ImportError as e:
        raise LabError("generating etcd's gRPC stubs needs grpcio-tools: pip install grpcio-tools") from e
    src = gomod.module_dir(API_MODULE, settings.versions.etcd)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    proto_root = tmp / "proto"
    try:
        for rel in PROTOS:
            dst = proto_root / PACKAGE / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(strip_annotations((src / rel).read_text()))
        include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto shipped with grpc_tools
        args = [
            "protoc",
            f"-I{proto_root}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(proto_root / PACKAGE / rel) for rel in PROTOS),
        ]
        if protoc.main(args) != 0:
            raise LabError(f"protoc failed on etcd {settings.versions.etcd}'s protos (run: {' '.join(args)})")
        shutil.rmtree(proto_root)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(out)
        except OSError:  # someone else finished first: theirs is as good as ours
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class Api:
    """The generated modules: message classes and service stubs."""

    def __init__(self, rpc: ModuleType, rpc_grpc: ModuleType, auth: ModuleType, kv: ModuleType) -> None:
        self.rpc, self.rpc_grpc, self.auth, self.kv = rpc, rpc_grpc, auth, kv


#: etcd version -> its loaded stubs. The generated package name has no version in it, so a process
#: holds the stubs of one etcd version; generated copies under different lab homes are identical.
_loaded: dict[str, Api] = {}


def load(settings: Settings) -> Api:
    version = settings.versions.etcd
    if version in _loaded:
        return _loaded[version]
    if _loaded:
        raise LabError(f"etcd stubs of {next(iter(_loaded))} are loaded already; cannot load {version} too")
    sys.path.insert(0, str(generate(settings)))
    _loaded[version] = Api(
        importlib.import_module(f"{PACKAGE}.etcdserverpb.rpc_pb2"),
        importlib.import_module(f"{PACKAGE}.etcdserverpb.rpc_pb2_grpc"),
        importlib.import_module(f"{PACKAGE}.authpb.auth_pb2"),
        importlib.import_module(f"{PACKAGE}.mvccpb.kv_pb2"),
    )
    return _loaded[version]
