"""The image's health check: exit 0 when `/readyz` on the public listener answers 200.

The listener is read from KALEIDO_HTTP_BIND as `kaleido run` reads it; a wildcard address is
probed on loopback. Standard library only: it runs in the image's Python with nothing else.
"""

import os
import sys
import urllib.request

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def readyz_url(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in WILDCARDS:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/readyz"


def main() -> int:
    url = readyz_url(os.environ.get("KALEIDO_HTTP_BIND", "127.0.0.1:8080"))
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:  # URLError and HTTPError (a 503 while not ready) are OSErrors
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
