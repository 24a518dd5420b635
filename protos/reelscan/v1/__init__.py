"""Generated protobuf and gRPC code for package reelscan.v1 (made by `make proto`; do not edit)."""
