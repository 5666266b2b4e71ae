#!/usr/bin/python3
"""A foreign gRPC client (Debian's python3-grpcio with the real protobuf runtime) against the
cm_rpc server in rpc_echo_server, in a separate process over loopback TCP.

Proves the wire format is real gRPC (statuses, messages, metadata, deadlines, gzip requests,
health checking) and that SIGTERM drains an in-flight call and exits 0 within a bound.

Usage: test_rpc_foreign.py <rpc_echo_server> <proto dir>
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import th_proc  # noqa: E402  (the server dies with this test, however it ends)

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def load_messages(proto_dir, tmp):
    """Compiles the real .proto files with protoc into a descriptor set and returns classes."""
    out = os.path.join(tmp, "fds.pb")
    subprocess.run(["protoc", "-I", proto_dir, "--include_imports", "--descriptor_set_out=" + out,
                    "tigress/mailbox/v1/mailbox_store.proto", "grpc/health/v1/health.proto"],
                   check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    factory = message_factory.MessageFactory(pool)

    def cls(name):
        d = pool.FindMessageTypeByName(name)
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(d)
        return factory.GetPrototype(d)

    return (cls("tigress.mailbox.v1.ReadDisplayRequest"),
            cls("tigress.mailbox.v1.ReadDisplayResponse"),
            cls("grpc.health.v1.HealthCheckRequest"),
            cls("grpc.health.v1.HealthCheckResponse"))


def start_server(binary, tmp, extra):
    ready = os.path.join(tmp, "ready.json")
    log = open(os.path.join(tmp, "server.log"), "w")
    p = th_proc.spawn([binary, "--ready-file=" + ready] + extra, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(ready):
            with open(ready) as f:
                return p, json.load(f)["grpc_port"]
        if p.poll() is not None:
            break
        time.sleep(0.02)
    th_proc.kill_all()
    raise SystemExit("server did not become ready")


def main():
    binary, proto_dir = sys.argv[1], sys.argv[2]
    tmp = tempfile.mkdtemp(prefix="rpc_foreign.")
    EchoReq, EchoResp, HcReq, HcResp = load_messages(proto_dir, tmp)
    proc, port = start_server(binary, tmp, ["--workers=2", "--drain-ms=3000"])
    try:
        ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.enable_http_proxy", 0)])
        echo = ch.unary_unary("/test.Echo/Echo", request_serializer=EchoReq.SerializeToString,
                              response_deserializer=EchoResp.FromString)
        check_h = ch.unary_unary("/grpc.health.v1.Health/Check",
                                 request_serializer=HcReq.SerializeToString,
                                 response_deserializer=HcResp.FromString)
        watch = ch.unary_stream("/grpc.health.v1.Health/Watch",
                                request_serializer=HcReq.SerializeToString,
                                response_deserializer=HcResp.FromString)
        SERVING = HcResp.DESCRIPTOR.enum_types_by_name["ServingStatus"].values_by_name["SERVING"].number
        NOT_SERVING = HcResp.DESCRIPTOR.enum_types_by_name["ServingStatus"].values_by_name[
            "NOT_SERVING"].number

        r = echo(EchoReq(mailbox_id="hello"), timeout=5, metadata=[("x-request-id", "py-1")])
        check(r.display.title == "hello" and r.display.description == "py-1",
              "echo ok path with x-request-id")
        check(0 < r.expires_at_ms <= 5100, "server sees the client deadline")

        r = echo(EchoReq(mailbox_id="x" * 100000), timeout=5, compression=grpc.Compression.Gzip)
        check(r.display.title == "x" * 100000, "gzip-compressed 100 kB request")

        try:
            echo(EchoReq(mailbox_id="fail:no way"), timeout=5)
            check(False, "error status")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and e.details() == "boom no way",
                  "error status and message")

        t0 = time.monotonic()
        try:
            echo(EchoReq(mailbox_id="sleep:700"), timeout=0.2)
            check(False, "deadline")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 1.0,
                  "deadline exceeded on a slow handler")

        for path in ["/test.Echo/Nope", "/grpc.health.v1.Health/Watch"]:
            t0 = time.monotonic()
            try:
                if path.endswith("Watch"):
                    list(watch(HcReq(service=""), timeout=10))
                else:
                    ch.unary_unary(path)(b"", timeout=10)
                check(False, "unimplemented " + path)
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.UNIMPLEMENTED and time.monotonic() - t0 < 1.0,
                      "UNIMPLEMENTED at once for " + path)

        # A message that is not a ReadDisplayRequest (field 1 claims 100 missing bytes).
        try:
            ch.unary_unary("/test.Echo/Echo")(b"\x0a\x64xx", timeout=5)
            check(False, "malformed request")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "malformed request INVALID_ARGUMENT")

        check(check_h(HcReq(service=""), timeout=5).status == SERVING, "health SERVING")
        try:
            check_h(HcReq(service="no.such.Service"), timeout=5)
            check(False, "health NOT_FOUND")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "health unknown service NOT_FOUND")
        proc.send_signal(signal.SIGUSR1)
        st = None
        for _ in range(100):
            st = check_h(HcReq(service=""), timeout=5).status
            if st == NOT_SERVING:
                break
            time.sleep(0.02)
        check(st == NOT_SERVING, "health NOT_SERVING after SIGUSR1")

        # SIGTERM while a call is in flight: the call completes, the process exits 0.
        result = {}

        def slow():
            try:
                result["r"] = echo(EchoReq(mailbox_id="sleep:800"), timeout=10).display.title
            except grpc.RpcError as e:
                result["e"] = e.code()

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        dt = time.monotonic() - t0
        t.join()
        check(rc == 0, "SIGTERM exits 0 (rc=%s)" % rc)
        check(dt < 3.0, "SIGTERM drain bounded (%.2f s)" % dt)
        check(result.get("r") == "sleep:800", "in-flight call completed during drain (%s)" % result)
        ch.close()
    finally:
        th_proc.kill_all()
    with open(os.path.join(tmp, "server.log")) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    bad = [l for l in lines if not l.startswith("{")]
    check(not bad, "server stderr is JSON lines only (%d lines)" % len(lines))
    if FAILS:
        print("server log:\n" + "\n".join(lines))
        sys.exit(1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
