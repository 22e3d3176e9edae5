"""`python -m modeldrop.local.vertex --host 127.0.0.1 --port 8090 [--engine ...] [--cache DIR]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modeldrop.local.vertex.engines import KINDS

ENGINE_HELP = (
    "model server: auto (vLLM with a GPU and vllm installed, else transformers), "
    "transformers (transformers serve on CPU), vllm, or echo (answers instantly without "
    "loading the model: a benchmark aid for proxy overhead, not serving)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (0: any free)")
    parser.add_argument("--engine", choices=KINDS, default="auto", help=ENGINE_HELP)
    parser.add_argument(
        "--cache", default=None, help="where model copies and engine logs go (default: a temp dir)"
    )


def run(args: argparse.Namespace) -> int:
    from modeldrop.local.vertex.engines import EngineError
    from modeldrop.local.vertex.server import serve

    try:
        serve(args.host, args.port, args.engine, args.cache)
    except (EngineError, ValueError) as exc:  # no engine here, or a bad MODELDROP_VERTEX_FAULTS
        print(f"modeldrop: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"modeldrop: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modeldrop.local.vertex",
        description="Local Vertex AI emulator: Model Garden deploys and dedicated-endpoint "
        "queries, served for real.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
