"""`python -m modeldrop.local.vertex --host 127.0.0.1 --port 8090 [--tls-port P] [--psc-port P]
[--engine ...] [--cache DIR] [--ca-dir DIR] [--capacity FILE]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modeldrop.local.vertex.engines import KINDS

PSC_PORT = 8443

ENGINE_HELP = (
    "model server: auto (vLLM with a GPU and vllm installed, else transformers), "
    "transformers (transformers serve on CPU), vllm, or echo (answers instantly without "
    "loading the model: a benchmark aid for proxy overhead, not serving)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8090, help="control-plane (http) port (0: any free)"
    )
    parser.add_argument(
        "--tls-port",
        type=int,
        default=0,
        help="dedicated-endpoint (https) port, the dedicatedEndpointDns (default: any free)",
    )
    parser.add_argument(
        "--psc-port",
        type=int,
        default=PSC_PORT,
        help="the (https) port Private Service Connect endpoints listen on, on their addresses' "
        f"IPs (127.0.0.2, 127.0.0.3, ...; 443 on Google Cloud; default {PSC_PORT}, 0: any free)",
    )
    parser.add_argument("--engine", choices=KINDS, default="auto", help=ENGINE_HELP)
    parser.add_argument(
        "--cache", default=None, help="where model copies and engine logs go (default: a temp dir)"
    )
    parser.add_argument(
        "--ca-dir",
        default=".modeldrop",
        help="where the CA of the TLS port is kept, as vertex-ca.pem (default: .modeldrop)",
    )
    parser.add_argument(
        "--capacity",
        default=None,
        metavar="FILE",
        help="GPU capacity JSON, "
        '{"REGION": {"ACCELERATOR_TYPE": {"quota": N, "stock": N, "spot_stock": N}}} '
        "(missing: unlimited; spot_stock, what Spot deploys may use, defaults to stock; "
        "replace at run time with POST /emulator/capacity)",
    )


def run(args: argparse.Namespace) -> int:
    from modeldrop.local.vertex.capacity import load_capacity
    from modeldrop.local.vertex.emulator import serve
    from modeldrop.local.vertex.engines import EngineError

    try:
        capacity = load_capacity(args.capacity) if args.capacity else None
    except (OSError, ValueError) as exc:
        print(f"modeldrop: error: --capacity {args.capacity}: {exc}", file=sys.stderr)
        return 2
    try:
        serve(
            args.host,
            args.port,
            args.engine,
            args.cache,
            args.tls_port,
            args.ca_dir,
            capacity,
            psc_port=args.psc_port,
        )
    except (EngineError, ValueError) as exc:  # no engine here, or a bad MODELDROP_VERTEX_FAULTS
        print(f"modeldrop: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a port in use, or a CA folder it cannot write
        print(
            f"modeldrop: error: cannot start on {args.host} (ports {args.port} and "
            f"{args.tls_port or 'any'}, PSC port {args.psc_port or 'any'}, CA in {args.ca_dir}): "
            f"{exc}",
            file=sys.stderr,
        )
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
