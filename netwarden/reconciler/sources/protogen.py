"""Generate the Python stubs of netwarden/reconciler/sources/proto/*.proto with grpcio-tools.

The stubs are committed (the image and a plain `pip install` need no code generator); a test
regenerates them into a temporary folder and asserts the same bytes, so a .proto edited without
regenerating fails. Regenerate after editing a .proto:

    python -m netwarden.reconciler.sources.protogen
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = Path(__file__).resolve().parent / "proto"
#: (proto file, with gRPC service stubs) — flow.proto has messages only.
PROTOS = (("flow.proto", False), ("observer.proto", True), ("goldmane.proto", True))


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Run protoc (grpc_tools) for every proto; returns the files written below out_dir."""
    from importlib import resources

    from grpc_tools import protoc

    include = str(resources.files("grpc_tools") / "_proto")
    written: list[Path] = []
    for name, with_grpc in PROTOS:
        rel = (PROTO_DIR / name).relative_to(ROOT)
        args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={out_dir}", f"--pyi_out={out_dir}"]
        if with_grpc:
            args.append(f"--grpc_python_out={out_dir}")
        if protoc.main([*args, str(PROTO_DIR / name)]) != 0:
            raise RuntimeError(f"protoc failed on {rel}")
        stem = rel.with_suffix("")
        suffixes = ("_pb2.py", "_pb2.pyi") + (("_pb2_grpc.py",) if with_grpc else ())
        written += [out_dir / f"{stem}{suffix}" for suffix in suffixes]
    return written


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT), file=sys.stderr)
