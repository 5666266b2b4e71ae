#!/usr/bin/python3
"""Foreign gRPC client: python3-grpcio (Debian) calls the real mailbox-store binary.

Proves the wire format is real gRPC: Health/Check, Create, ReadSecure, a status code and
UNIMPLEMENTED for an unknown method. Stubs are generated at test time with protoc; they are
moved into a flat directory because a generated "grpc/" package (grpc/health/v1) would shadow
the grpcio module of the same name. The server is started through tests/harness/th_proc, so it
dies with this test however the test ends (a failed assertion, a ctest timeout, SIGKILL).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import th_proc  # noqa: E402

BIN = os.path.join(os.environ["TIGRESS_BIN_DIR"], "mailbox-store")
SRC = os.environ["TIGRESS_SRC_DIR"]


def gen_stubs(tmp):
    out = os.path.join(tmp, "gen")
    flat = os.path.join(tmp, "flat")
    os.makedirs(out)
    os.makedirs(flat)
    protos = ["grpc/health/v1/health.proto", "tigress/mailbox/v1/mailbox_store.proto"]
    subprocess.run(["protoc", "-I", os.path.join(SRC, "proto"), "--python_out=" + out] + protos,
                   check=True)
    for p in protos:
        mod = os.path.basename(p).replace(".proto", "_pb2.py")
        shutil.copy(os.path.join(out, os.path.dirname(p), mod), flat)
    sys.path.insert(0, flat)


def main():
    tmp = tempfile.mkdtemp(prefix="ms-py-")
    proc = None
    try:
        gen_stubs(tmp)
        import health_pb2
        import mailbox_store_pb2 as pb

        ready = os.path.join(tmp, "ready.json")
        log = open(os.path.join(tmp, "stderr.log"), "w")
        proc = th_proc.spawn([BIN, "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0",
                                 "--data-dir=" + os.path.join(tmp, "data"),
                                 "--ready-file=" + ready], stderr=log)
        deadline = time.time() + 30
        while not os.path.exists(ready):
            assert proc.poll() is None, "mailbox-store exited early"
            assert time.time() < deadline, "mailbox-store not ready"
            time.sleep(0.02)
        port = json.load(open(ready))["grpc_port"]

        ch = grpc.insecure_channel("127.0.0.1:%d" % port)

        def method(name, req_cls, resp_cls):
            return ch.unary_unary(name, request_serializer=req_cls.SerializeToString,
                                  response_deserializer=resp_cls.FromString)

        check = method("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest,
                       health_pb2.HealthCheckResponse)
        for svc in ("", "tigress.mailbox.v1.MailboxStore"):
            r = check(health_pb2.HealthCheckRequest(service=svc), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING, r

        svc = "/tigress.mailbox.v1.MailboxStore/"
        create = method(svc + "Create", pb.CreateRequest, pb.CreateResponse)
        read = method(svc + "ReadSecure", pb.ReadSecureRequest, pb.ReadSecureResponse)
        mid = str(uuid.uuid4())
        req = pb.CreateRequest(mailbox_id=mid, device_claim=str(uuid.uuid4()), correlation_id="c1",
                               payload=pb.Payload(type="AES128", data=b"\x00\x01binary\xff"),
                               display=pb.DisplayInformation(title="Car Key"), ttl_seconds=60)
        r = create(req, timeout=10)
        assert r.mailbox_id == mid and not r.duplicate and r.expires_at_ms > 0, r
        r = create(req, timeout=10)
        assert r.duplicate, r
        try:
            create(pb.CreateRequest(mailbox_id=mid, device_claim="other", payload=req.payload,
                                    ttl_seconds=60), timeout=10)
            raise AssertionError("second create of one id succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e
        r = read(pb.ReadSecureRequest(mailbox_id=mid, device_claim="receiver"), timeout=10)
        assert r.payload.data == b"\x00\x01binary\xff" and r.display.title == "Car Key", r

        t0 = time.time()
        try:
            method(svc + "Nope", pb.ReadDisplayRequest, pb.ReadDisplayResponse)(
                pb.ReadDisplayRequest(mailbox_id=mid), timeout=10)
            raise AssertionError("unknown method succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
        assert time.time() - t0 < 5.0, "UNIMPLEMENTED took %.1f s" % (time.time() - t0)
        ch.close()

        rc = th_proc.stop(proc, signal.SIGTERM, timeout=20)
        proc = None
        assert rc == 0, "mailbox-store exit code %s after SIGTERM" % rc
        print("python3-grpcio client: OK")
    finally:
        if proc is not None:
            th_proc.stop(proc, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
