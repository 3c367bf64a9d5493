"""The `domicile` command line: the server, policy tools and a client for every RPC."""

import os

# Read once by gRPC's core when grpc is first imported, so it must be set before: without it
# a failed TLS handshake also prints gRPC's own log line beside the CLI's one-line error.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
