"""The `domicile` command line: the server, policy tools and a client for every RPC.

gRPC's C core writes its own log lines (plain text, on stderr): beside a client command's
one-line error (a failed TLS handshake), and interleaved with the server's log, breaking its
JSON lines. It reads GRPC_VERBOSITY once, when grpc is first imported -- which the CLI's
modules do -- so it is silenced here, before that, unless the operator asked for it
(`GRPC_VERBOSITY=ERROR domicile serve ...`).
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
