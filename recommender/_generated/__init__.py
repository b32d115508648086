"""Python stubs generated from ``proto/`` (protoc output; never edit the generated files).

Importing this package makes sure the stubs exist and are at least as new as every
``.proto`` under ``proto/``, generating them with ``grpc_tools.protoc`` when they are not,
so a fresh checkout needs no build step: ``from recommender._generated.hotfeed.v1 import
recommender_pb2`` just works. ``scripts/gen_proto.sh`` regenerates them on demand.

Only this file is committed; everything else in this folder is git-ignored output.

protoc writes imports between generated modules as absolute ``hotfeed.v1`` imports,
matching the proto package. Putting this folder on ``sys.path`` would make ``hotfeed.v1``
and ``recommender._generated.hotfeed.v1`` two modules registering the same descriptors
(protobuf refuses the second), so instead the generated imports are rewritten to the
``recommender._generated.`` prefix. The descriptors keep their proto file names
(``hotfeed/v1/recommender.proto``), which is what reflection clients expect.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from recommender.errors import ConfigError
from recommender.settings import REPO_ROOT

__all__ = ["PROTO_ROOT", "STUBS_DIR", "generate_stubs", "stubs_are_stale", "ensure_stubs"]

PROTO_ROOT = REPO_ROOT / "proto"
STUBS_DIR = Path(__file__).resolve().parent
_PACKAGE = __name__


def _proto_files(proto_root: Path) -> list[Path]:
    return sorted(proto_root.rglob("*.proto"))


def _stub_paths(proto: Path, *, proto_root: Path, out_dir: Path) -> tuple[Path, Path]:
    rel = proto.relative_to(proto_root).with_suffix("")
    return out_dir / rel.parent / f"{rel.name}_pb2.py", out_dir / rel.parent / f"{rel.name}_pb2_grpc.py"


def stubs_are_stale(*, proto_root: Path = PROTO_ROOT, out_dir: Path = STUBS_DIR) -> bool:
    """Return True when a stub is missing or older than its ``.proto``.

    A tree without ``proto_root`` (an installed wheel that ships only the stubs) is never stale.
    """
    if not proto_root.is_dir():
        return False
    for proto in _proto_files(proto_root):
        proto_mtime = proto.stat().st_mtime
        for stub in _stub_paths(proto, proto_root=proto_root, out_dir=out_dir):
            if not stub.exists() or stub.stat().st_mtime < proto_mtime:
                return True
    return False


def _rewrite_imports(path: Path, top_packages: set[str]) -> None:
    # Only imports of our own proto packages move; google.protobuf imports stay as they are.
    names = "|".join(sorted(re.escape(p) for p in top_packages))
    text = path.read_text(encoding="utf-8")
    text = re.sub(rf"^(\s*)from ({names})((?:\.\w+)*) import ", rf"\1from {_PACKAGE}.\2\3 import ", text, flags=re.M)
    text = re.sub(rf"^(\s*)import ({names})((?:\.\w+)+)", rf"\1import {_PACKAGE}.\2\3", text, flags=re.M)
    path.write_text(text, encoding="utf-8")


def generate_stubs(*, proto_root: Path = PROTO_ROOT, out_dir: Path = STUBS_DIR) -> list[Path]:
    """Return the stub files written after compiling every ``.proto`` under ``proto_root``.

    Writes ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` below ``out_dir`` mirroring the
    proto folders, plus ``__init__.py`` for each package folder. Each file is moved into place
    atomically, so a process importing the stubs meanwhile sees the old or the new file.
    Raises ConfigError when grpcio-tools is missing or protoc rejects a file.
    """
    try:
        from grpc_tools import protoc
    except ImportError:
        raise ConfigError(
            "grpcio-tools is not installed, so the gRPC stubs cannot be generated; "
            "run `.venv/bin/pip install grpcio-tools`"
        ) from None
    import importlib.resources

    protos = _proto_files(proto_root)
    if not protos:
        raise ConfigError(f"no .proto files under {str(proto_root)!r}; restore proto/ from git")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    staging = Path(tempfile.mkdtemp(prefix=".gen-", dir=out_dir))
    try:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={staging}",
            f"--pyi_out={staging}",
            f"--grpc_python_out={staging}",
            *(str(p) for p in protos),
        ]
        # protoc prints its own diagnostics (file:line: message) to stderr.
        if protoc.main(args) != 0:
            raise ConfigError(f"protoc rejected the files under {str(proto_root)!r} (see its messages above); fix the .proto")
        top_packages = {p.relative_to(proto_root).parts[0] for p in protos if len(p.relative_to(proto_root).parts) > 1}
        written: list[Path] = []
        for produced in sorted(staging.rglob("*.py*")):
            if top_packages and produced.suffix in (".py", ".pyi"):
                _rewrite_imports(produced, top_packages)
            rel = produced.relative_to(staging)
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(produced, target)
            written.append(target)
        for folder in {t.parent for t in written}:
            while folder != out_dir and out_dir in folder.parents:
                (folder / "__init__.py").touch(exist_ok=True)
                folder = folder.parent
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_stubs(*, proto_root: Path = PROTO_ROOT, out_dir: Path = STUBS_DIR) -> bool:
    """Return True when stubs had to be (re)generated, False when they were up to date."""
    if not stubs_are_stale(proto_root=proto_root, out_dir=out_dir):
        return False
    generate_stubs(proto_root=proto_root, out_dir=out_dir)
    return True


ensure_stubs()
