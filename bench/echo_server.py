"""The reference for unary throughput: a bare grpc.aio server whose JobService.GetJob returns a canned response.

Same generated servicer, same message, no work: whatever reelscan does beyond this (validation, the job lookup,
Job -> proto conversion, interceptors) is what the GetJob QPS ratio measures. The canned response is the exact
GetJobResponse reelscan returned for the same job, passed in as a file, so both serialize the same bytes.

Usage: python -m bench.echo_server [--response FILE]   (prints "listening HOST:PORT" on stdout)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import grpc

from reelscan.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc


class EchoJobService(job_service_pb2_grpc.JobServiceServicer):  # type: ignore[misc]
    def __init__(self, response: job_service_pb2.GetJobResponse) -> None:
        self._response = response

    async def GetJob(self, request: job_service_pb2.GetJobRequest, context: Any) -> job_service_pb2.GetJobResponse:
        return self._response


async def serve(response: job_service_pb2.GetJobResponse) -> None:
    server = grpc.aio.server()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(EchoJobService(response), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--response", type=Path, help="serialized GetJobResponse to return")
    args = parser.parse_args(argv)
    response = job_service_pb2.GetJobResponse(job=job_pb2.Job(id="echo", state=job_pb2.JOB_STATE_SUCCEEDED))
    if args.response is not None:
        response = job_service_pb2.GetJobResponse.FromString(args.response.read_bytes())
    asyncio.run(serve(response))
    return 0


if __name__ == "__main__":
    sys.exit(main())
