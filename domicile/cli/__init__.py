"""The `domicile` command line: the server, policy tools and a client for every RPC."""
