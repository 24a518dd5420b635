"""The reelscan gRPC server."""
