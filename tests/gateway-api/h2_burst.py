#!/usr/bin/python3
"""Sends many requests at once on ONE h2c connection (prior knowledge): every HEADERS frame
in a single write, so the server reads them in one loop iteration. Used by
test_gw_api_flows (libcurl 7.88 fails multiplexed h2c transfers: curl issue #10634).

stdin: one request a line, "METHOD PATH CORRELATION-ID CLAIM" (CLAIM "-" for none).
stdout: one JSON object a line, in the same order: {"status", "corr", "body"}; exit 1 on a
transport error (reason on stderr)."""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings


def main():
    port = int(sys.argv[1])
    reqs = [line.split() for line in sys.stdin if line.strip()]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    streams = {}
    for i, (method, path, corr, claim) in enumerate(reqs):
        sid = conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"),
                (":authority", "127.0.0.1:%d" % port), ("mailbox-correlation-id", corr)]
        if claim != "-":
            hdrs.append(("deviceclaim", claim))
        conn.send_headers(sid, hdrs, end_stream=True)
        streams[sid] = {"i": i, "status": 0, "corr": "", "body": b"", "done": False}
    sock.sendall(conn.data_to_send())
    left = len(streams)
    while left:
        data = sock.recv(65536)
        if not data:
            sys.stderr.write("connection closed with %d streams open\n" % left)
            return 1
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                s = streams[ev.stream_id]
                for k, v in ev.headers:
                    k = k.decode() if isinstance(k, bytes) else k
                    v = v.decode() if isinstance(v, bytes) else v
                    if k == ":status":
                        s["status"] = int(v)
                    elif k == "mailbox-correlation-id":
                        s["corr"] = v
            elif isinstance(ev, h2.events.DataReceived):
                streams[ev.stream_id]["body"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                streams[ev.stream_id]["done"] = True
                left -= 1
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                sys.stderr.write("server ended a stream or the connection: %r\n" % ev)
                return 1
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    for sid in sorted(streams, key=lambda s: streams[s]["i"]):
        s = streams[sid]
        print(json.dumps({"status": s["status"], "corr": s["corr"],
                          "body": s["body"].decode("utf-8", "replace")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
