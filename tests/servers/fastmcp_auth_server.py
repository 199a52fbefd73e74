"""A FastMCP 4.x server behind bearer JWT auth, instrumented with the one line.

Run as ``python -m tests.servers.fastmcp_auth_server --http PORT TOKEN_FILE``: it makes a fresh
RSA key pair, writes one valid token to TOKEN_FILE and serves streamable HTTP on 127.0.0.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier, RSAKeyPair

import mcplens

ISSUER, AUDIENCE = "https://issuer.test", "mcplens-test"


def main(argv: list[str]) -> None:
    port, token_file = int(argv[1]), Path(argv[2])
    keys = RSAKeyPair.generate()
    server = FastMCP("fastmcp-auth", version="1.0",
                     auth=JWTVerifier(public_key=keys.public_key, issuer=ISSUER, audience=AUDIENCE))

    @server.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    mcplens.instrument(server)
    tmp = token_file.with_suffix(".tmp")
    tmp.write_text(keys.create_token(subject="alice", issuer=ISSUER, audience=AUDIENCE))
    tmp.rename(token_file)
    server.run("http", host="127.0.0.1", port=port, log_level="WARNING", show_banner=False)


if __name__ == "__main__":
    main(sys.argv[1:])
