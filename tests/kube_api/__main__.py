"""Serve the test Kubernetes API from a separate process, for end-to-end tests.

    python -m tests.kube_api --seed objects.json [--port-file PATH] [--token TOKEN]

`objects.json` is a JSON list of objects (Deployments, StatefulSets, HPAs, ScaledObjects,
Leases) in the shapes tests.kube_api.objects builds. The URL is printed on stdout once the
server listens (and written to --port-file, if given); SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from tests.kube_api.server import FakeKubeApi


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube_api", description=__doc__)
    parser.add_argument("--seed", type=Path, help="JSON list of objects to start with")
    parser.add_argument("--port-file", type=Path, help="write the listening port here")
    parser.add_argument("--token", help="require this bearer token")
    parser.add_argument("--without-keda", action="store_true", help="serve no keda.sh API group")
    args = parser.parse_args()
    seed = json.loads(args.seed.read_text()) if args.seed else []
    if not isinstance(seed, list):
        parser.error(f"{args.seed}: expected a JSON list of Kubernetes objects")
    api = FakeKubeApi(token=args.token, keda_installed=not args.without_keda)
    for obj in seed:
        api.add(obj)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with api:
        if args.port_file:
            args.port_file.write_text(str(api.port))
        print(api.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
