"""Thin gRPC servicers: translate proto <-> domain and map domain errors to status codes."""
