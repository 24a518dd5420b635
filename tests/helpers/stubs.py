"""Async stubs of the three reelscan services on one channel."""

from __future__ import annotations

import grpc

from reelscan.v1 import job_service_pb2_grpc, library_pb2_grpc, scan_service_pb2_grpc


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        self.jobs = job_service_pb2_grpc.JobServiceStub(channel)
        self.library = library_pb2_grpc.LibraryServiceStub(channel)
