"""Generated protobuf and gRPC code for domicile.v1 (scripts/gen_protos.py)."""
