#!/usr/bin/python3
"""HTTP/2 abuse probes against the gateway core (h2c, prior knowledge), with python3-h2.

Usage: /usr/bin/python3 h2probe.py HOST PORT PROBE [N]
  rapid_reset N   N x (HEADERS + RST_STREAM CANCEL) on /async?ms=2000; pass = GOAWAY
                  ENHANCE_YOUR_CALM (or the connection closed) before all N were accepted
  reset_mid N     N x (POST /async headers + partial body, then RST), then a normal GET on
                  the same connection; pass = that GET answers 200
  slow_body       POST with content-length 10, 1 byte, then silence; pass = 408 or a reset
                  of the stream within 15 s
Prints one JSON line; exit 0 on pass, 1 on fail.
"""
import json
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def connect(host, port):
    s = socket.create_connection((host, port), timeout=10)
    cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def pump(s, c, until, timeout):
    """Reads events until until(event) is true; returns (event, all events) or (None, ...)."""
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset", seen
        if not data:
            return "eof", seen
        try:
            events = c.receive_data(data)
        except h2.exceptions.ProtocolError:
            return "protocol_error", seen
        out = c.data_to_send()
        if out:
            try:
                s.sendall(out)
            except OSError:
                pass
        for e in events:
            seen.append(e)
            if until(e):
                return e, seen
    return None, seen


def hdrs(host, port, method, path, extra=()):
    return [(":method", method), (":path", path), (":scheme", "http"),
            (":authority", "%s:%d" % (host, port))] + list(extra)


def rapid_reset(host, port, n):
    s, c = connect(host, port)
    sent = 0
    closed = None
    try:
        for i in range(n):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, hdrs(host, port, "GET", "/async?ms=2000"), end_stream=True)
            c.reset_stream(sid, error_code=8)  # CANCEL
            sent += 1
            if sent % 20 == 0:
                s.sendall(c.data_to_send())
        s.sendall(c.data_to_send())
    except (OSError, h2.exceptions.ProtocolError) as e:
        closed = type(e).__name__
    ev, _ = pump(s, c, lambda e: isinstance(e, h2.events.ConnectionTerminated), 10)
    res = {"probe": "rapid_reset", "sent": sent, "closed_while_sending": closed}
    ok = False
    if isinstance(ev, h2.events.ConnectionTerminated):
        res["goaway"] = int(ev.error_code)
        res["last_stream_id"] = ev.last_stream_id
        ok = int(ev.error_code) == 11  # ENHANCE_YOUR_CALM
    else:
        res["end"] = str(ev)
        ok = ev in ("eof", "reset") or closed is not None
    print(json.dumps(res))
    return ok


def reset_mid(host, port, n):
    s, c = connect(host, port)
    for i in range(n):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, hdrs(host, port, "POST", "/async?ms=300",
                                 [("content-length", "100")]), end_stream=False)
        c.send_data(sid, b"x" * 10)
        c.reset_stream(sid, error_code=8)
        # And some that reach the API before the reset: answered after the client left.
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, hdrs(host, port, "GET", "/async?ms=200"), end_stream=True)
        c.reset_stream(sid, error_code=8)
    s.sendall(c.data_to_send())
    time.sleep(0.5)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, hdrs(host, port, "GET", "/echo"), end_stream=True)
    s.sendall(c.data_to_send())
    ev, _ = pump(s, c, lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid,
                 10)
    status = None
    if isinstance(ev, h2.events.ResponseReceived):
        status = dict(ev.headers).get(":status")
    print(json.dumps({"probe": "reset_mid", "n": n, "status": status}))
    return status == "200"


def slow_body(host, port):
    s, c = connect(host, port)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, hdrs(host, port, "POST", "/echo", [("content-length", "10")]),
                   end_stream=False)
    c.send_data(sid, b"x")
    s.sendall(c.data_to_send())
    t0 = time.time()

    def done(e):
        return (isinstance(e, (h2.events.ResponseReceived, h2.events.StreamReset,
                               h2.events.ConnectionTerminated)))
    ev, _ = pump(s, c, done, 15)
    res = {"probe": "slow_body", "elapsed_s": round(time.time() - t0, 2)}
    ok = False
    if isinstance(ev, h2.events.ResponseReceived):
        res["status"] = dict(ev.headers).get(":status")
        ok = res["status"] == "408"
    elif ev is not None:
        res["end"] = type(ev).__name__ if not isinstance(ev, str) else ev
        ok = True
    print(json.dumps(res))
    return ok


def main():
    host, port, probe = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    if probe == "rapid_reset":
        ok = rapid_reset(host, port, n or 1000)
    elif probe == "reset_mid":
        ok = reset_mid(host, port, n or 50)
    elif probe == "slow_body":
        ok = slow_body(host, port)
    else:
        print("unknown probe", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
