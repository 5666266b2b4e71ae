#!/usr/bin/python3
"""Fake push providers for push-dispatch tests. They speak the real protocols over TLS on
loopback and check what they receive the way the real services would.

  fakes.py gen DIR                    test CA, server cert, APNs .p8 key, FCM RSA key, webhook secret
  fakes.py apns DIR [--port N] [--max-streams N] --ready-file=F
      APNs stand-in: HTTP/2 + TLS (ALPN h2). Checks :method/:path, apns-* headers, the body and
      the ES256 provider JWT against DIR/apns_pub.pem (kid TESTKEY123, iss TESTTEAM01, topic
      com.example.tigress). Log: DIR/apns.log, one line per request: "<status> <token> <reason>".
      Stats: DIR/apns.stats (JSON: connections, max_concurrent, requests).
  fakes.py fcm DIR [--port N] --ready-file=F
      FCM HTTP v1 stand-in with its OAuth2 token endpoint (/token checks the RS256 jwt-bearer
      grant). Writes DIR/sa.json (the service-account file pointing at it). Log DIR/fcm.log.
  fakes.py webhook DIR [--port N] --ready-file=F
      Webhook receiver: checks Tigress-Webhook-Signature (HMAC-SHA-256 over "timestamp.body")
      with DIR/webhook.secret. Log DIR/webhook.log: "<status> <path> <delivery id>".

Behaviour control: DIR/<name>.ctl, JSON, re-read on every request:
  {"seq": [503, 200], "default": 200, "retry_after": 1, "dead": ["<token>"], "delay_ms": 0,
   "goaway_after": 0}
"seq" is consumed one status per request (restarting whenever the file changes), then
"default"; tokens in "dead" answer 410 (APNs/webhook) or 404 UNREGISTERED (FCM); "goaway_after"
makes the APNs fake send GOAWAY after that many requests on a connection.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

KEY_ID = "TESTKEY123"
TEAM_ID = "TESTTEAM01"
TOPIC = "com.example.tigress"
PROJECT = "tigress-test"
SA_EMAIL = "push@tigress-test.iam.gserviceaccount.com"


def b64url_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- gen
def gen(d):
    os.makedirs(d, exist_ok=True)
    now = datetime.datetime.utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tigress test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
               critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    with open(os.path.join(d, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(d, "server.pem"), "wb") as f:
        f.write(srv.public_bytes(pem))
    with open(os.path.join(d, "server.key"), "wb") as f:
        f.write(srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    apns_key = ec.generate_private_key(ec.SECP256R1())
    with open(os.path.join(d, "apns.p8"), "wb") as f:
        f.write(apns_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    with open(os.path.join(d, "apns_pub.pem"), "wb") as f:
        f.write(apns_key.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo))
    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(os.path.join(d, "fcm.key"), "wb") as f:
        f.write(fcm_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    with open(os.path.join(d, "webhook.secret"), "w") as f:
        f.write(secrets.token_hex(32) + "\n")


# ---------------------------------------------------------------- shared
class Ctl:
    """Reads DIR/<name>.ctl; the status sequence restarts whenever its content changes."""

    def __init__(self, d, name):
        self.path = os.path.join(d, name + ".ctl")
        self.lock = threading.Lock()
        self.text = None
        self.cfg = {}
        self.idx = 0

    def next(self, token):
        with self.lock:
            try:
                with open(self.path) as f:
                    text = f.read()
            except OSError:
                text = ""
            if text != self.text:
                self.text = text
                try:
                    self.cfg = json.loads(text) if text.strip() else {}
                except ValueError:
                    self.cfg = {}
                self.idx = 0
            cfg = self.cfg
            if token in cfg.get("dead", []):
                return 410, cfg
            seq = cfg.get("seq", [])
            if self.idx < len(seq):
                st = seq[self.idx]
                self.idx += 1
                return st, cfg
            return cfg.get("default", 200), cfg


class Log:
    def __init__(self, path):
        self.f = open(path, "a")
        self.lock = threading.Lock()

    def write(self, line):
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


def tls_context(d, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


# ---------------------------------------------------------------- APNs
APNS_REASONS = {400: "BadDeviceToken", 403: "ExpiredProviderToken", 410: "Unregistered",
                429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}


class Apns:
    def __init__(self, d, max_streams):
        self.d = d
        self.max_streams = max_streams
        with open(os.path.join(d, "apns_pub.pem"), "rb") as f:
            self.pub = serialization.load_pem_public_key(f.read())
        self.ctl = Ctl(d, "apns")
        self.log = Log(os.path.join(d, "apns.log"))
        self.stats_lock = threading.Lock()
        self.stats = {"connections": 0, "max_concurrent": 0, "requests": 0, "bad": 0}
        self.jwt_ok = set()

    def save_stats(self):
        write_atomic(os.path.join(self.d, "apns.stats"), json.dumps(self.stats))

    def check_jwt(self, auth):
        if not auth.startswith("bearer "):
            return "MissingProviderToken"
        tok = auth[7:]
        if tok in self.jwt_ok:
            return None
        try:
            h64, c64, s64 = tok.split(".")
            hdr = json.loads(b64url_dec(h64))
            claims = json.loads(b64url_dec(c64))
            sig = b64url_dec(s64)
            if hdr.get("alg") != "ES256" or hdr.get("kid") != KEY_ID or len(sig) != 64:
                return "InvalidProviderToken"
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            self.pub.verify(der, (h64 + "." + c64).encode(), ec.ECDSA(hashes.SHA256()))
            if claims.get("iss") != TEAM_ID:
                return "InvalidProviderToken"
            if abs(time.time() - claims.get("iat", 0)) > 3600:
                return "ExpiredProviderToken"
        except Exception:
            return "InvalidProviderToken"
        self.jwt_ok.add(tok)
        return None

    def check(self, h, body):
        """Returns (token, reason-if-bad)."""
        path = h.get(":path", "")
        m = re.fullmatch(r"/3/device/([0-9a-fA-F]+)", path)
        if h.get(":method") != "POST" or not m:
            return "-", "BadPath"
        token = m.group(1)
        bad = self.check_jwt(h.get("authorization", ""))
        if bad:
            return token, bad
        if h.get("apns-topic") != TOPIC:
            return token, "BadTopic"
        if h.get("apns-push-type") != "background" or h.get("apns-priority") != "5":
            return token, "BadPriority"
        exp = h.get("apns-expiration", "")
        if not exp.isdigit() or int(exp) < time.time() - 5:
            return token, "BadExpirationDate"
        try:
            p = json.loads(body)
            if p.get("aps", {}).get("content-available") != 1 or "alert" in p.get("aps", {}):
                return token, "BadPayload"
        except ValueError:
            return token, "BadPayload"
        return token, None

    def serve_conn(self, sock):
        import h2.config
        import h2.connection
        import h2.events
        import h2.settings
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams = {}
        served = 0
        goaway_sent = False
        with self.stats_lock:
            self.stats["connections"] += 1
            self.save_stats()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        streams[ev.stream_id] = [dict(ev.headers), b""]
                        with self.stats_lock:
                            if len(streams) > self.stats["max_concurrent"]:
                                self.stats["max_concurrent"] = len(streams)
                                self.save_stats()
                    elif isinstance(ev, h2.events.DataReceived):
                        if ev.stream_id in streams:
                            streams[ev.stream_id][1] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        hdrs, body = streams.pop(ev.stream_id, ({}, b""))
                        token, bad = self.check(hdrs, body)
                        cfg_ = {}
                        if bad:
                            status, reason = (403 if "Token" in bad and bad != "BadDeviceToken"
                                              else 400), bad
                            with self.stats_lock:
                                self.stats["bad"] += 1
                        else:
                            status, cfg_ = self.ctl.next(token)
                            reason = APNS_REASONS.get(status, "")
                        if cfg_.get("delay_ms"):
                            time.sleep(cfg_["delay_ms"] / 1000.0)
                        rh = [(":status", str(status)), ("apns-id", "00000000-0000-4000-8000-%012x"
                                                         % secrets.randbits(48))]
                        if status in (429, 503) and cfg_.get("retry_after") is not None:
                            rh.append(("retry-after", str(cfg_["retry_after"])))
                        if status == 200:
                            conn.send_headers(ev.stream_id, rh, end_stream=True)
                        else:
                            rb = json.dumps({"reason": reason}).encode()
                            rh.append(("content-type", "application/json"))
                            conn.send_headers(ev.stream_id, rh)
                            conn.send_data(ev.stream_id, rb, end_stream=True)
                        self.log.write("%d %s %s" % (status, token, reason or "-"))
                        with self.stats_lock:
                            self.stats["requests"] += 1
                        served += 1
                        ga = cfg_.get("goaway_after", 0)
                        if ga and served >= ga and not goaway_sent:
                            conn.close_connection(last_stream_id=ev.stream_id)
                            goaway_sent = True
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        raise EOFError
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                if goaway_sent and not streams:
                    break
        except Exception:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def run(self, port, ready):
        ctx = tls_context(self.d, ["h2"])
        ls = listen(port)
        write_atomic(ready, json.dumps({"https_port": ls.getsockname()[1]}))
        while True:
            c, _ = ls.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def handshake(c=c):
                try:
                    s = ctx.wrap_socket(c, server_side=True)
                except Exception:
                    c.close()
                    return
                if s.selected_alpn_protocol() != "h2":
                    s.close()
                    return
                self.serve_conn(s)
            threading.Thread(target=handshake, daemon=True).start()


# ---------------------------------------------------------------- HTTP/1.1 fakes
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.server.app.post(self, body)


class Fcm:
    def __init__(self, d):
        self.d = d
        with open(os.path.join(d, "fcm.key"), "rb") as f:
            self.key_pem = f.read()
        self.pub = serialization.load_pem_private_key(self.key_pem, None).public_key()
        self.ctl = Ctl(d, "fcm")
        self.log = Log(os.path.join(d, "fcm.log"))
        self.tokens = set()
        self.token_uri = None

    def post(self, h, body):
        if h.path == "/token":
            return self.token(h, body)
        m = re.fullmatch(r"/v1/projects/([^/]+)/messages:send", h.path)
        if not m or m.group(1) != PROJECT:
            self.log.write("404 - BadPath")
            return h.reply(404, b'{"error":{"code":404,"status":"NOT_FOUND"}}')
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            self.log.write("401 - BadAuth")
            return h.reply(401, b'{"error":{"code":401,"status":"UNAUTHENTICATED"}}')
        try:
            msg = json.loads(body)["message"]
            token = msg["token"]
            assert msg["data"]["type"] == "mailbox_updated"
            assert "notification" not in msg
        except Exception:
            self.log.write("400 - BadMessage")
            return h.reply(400, b'{"error":{"code":400,"status":"INVALID_ARGUMENT"}}')
        status, cfg = self.ctl.next(token)
        if status == 410:
            status = 404
        if cfg.get("delay_ms"):
            time.sleep(cfg["delay_ms"] / 1000.0)
        hdrs = []
        if status in (429, 503) and cfg.get("retry_after") is not None:
            hdrs.append(("Retry-After", str(cfg["retry_after"])))
        if status == 200:
            rb = json.dumps({"name": "projects/%s/messages/%d" % (PROJECT, secrets.randbits(40))})
            reason = "-"
        elif status == 404:
            reason = "UNREGISTERED"
            rb = json.dumps({"error": {"code": 404, "status": "NOT_FOUND", "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                 "errorCode": "UNREGISTERED"}]}})
        else:
            reason = "UNAVAILABLE" if status >= 500 else "ERR%d" % status
            rb = json.dumps({"error": {"code": status, "status": reason}})
        self.log.write("%d %s %s" % (status, token, reason))
        h.reply(status, rb.encode(), hdrs + [("Content-Type", "application/json")])

    def token(self, h, body):
        form = urllib.parse.parse_qs(body.decode())
        try:
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            h64, c64, s64 = form["assertion"][0].split(".")
            hdr = json.loads(b64url_dec(h64))
            claims = json.loads(b64url_dec(c64))
            assert hdr["alg"] == "RS256"
            self.pub.verify(b64url_dec(s64), (h64 + "." + c64).encode(), padding.PKCS1v15(),
                            hashes.SHA256())
            assert claims["iss"] == SA_EMAIL
            assert claims["aud"] == self.token_uri
            assert "firebase.messaging" in claims["scope"]
            assert claims["exp"] > time.time() and claims["iat"] <= time.time() + 60
        except Exception:
            self.log.write("400 - BadGrant")
            return h.reply(400, b'{"error":"invalid_grant"}')
        tok = "ya29." + secrets.token_urlsafe(24)
        self.tokens.add(tok)
        self.log.write("200 - TokenIssued")
        h.reply(200, json.dumps({"access_token": tok, "expires_in": 3599,
                                 "token_type": "Bearer"}).encode(),
                [("Content-Type", "application/json")])

    def prepare(self, port):
        self.token_uri = "https://127.0.0.1:%d/token" % port
        sa = {"type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
              "private_key": self.key_pem.decode(), "client_email": SA_EMAIL,
              "token_uri": self.token_uri}
        write_atomic(os.path.join(self.d, "sa.json"), json.dumps(sa))


class Webhook:
    def __init__(self, d):
        with open(os.path.join(d, "webhook.secret")) as f:
            self.secret = f.read().rstrip("\n").encode()
        self.ctl = Ctl(d, "webhook")
        self.log = Log(os.path.join(d, "webhook.log"))

    def post(self, h, body):
        did = h.headers.get("Tigress-Webhook-Id", "")
        ts = h.headers.get("Tigress-Webhook-Timestamp", "")
        sig = h.headers.get("Tigress-Webhook-Signature", "")
        want = "v1=" + hmac.new(self.secret, ts.encode() + b"." + body,
                                hashlib.sha256).hexdigest()
        ok = (hmac.compare_digest(sig, want) and ts.isdigit()
              and abs(time.time() - int(ts)) < 300 and did)
        try:
            p = json.loads(body)
            ok = ok and p.get("deliveryId") == did and p.get("type") == "mailbox_updated"
        except ValueError:
            ok = False
        if not ok:
            self.log.write("401 %s %s BadSignature" % (h.path, did or "-"))
            return h.reply(401)
        status, cfg = self.ctl.next(h.path)
        hdrs = []
        if status in (429, 503) and cfg.get("retry_after") is not None:
            hdrs.append(("Retry-After", str(cfg["retry_after"])))
        self.log.write("%d %s %s" % (status, h.path, did))
        h.reply(status, b"", hdrs)


def run_http(d, app, port, ready):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
    srv.allow_reuse_address = True
    srv.daemon_threads = True
    srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.server_bind()
    srv.server_activate()
    srv.app = app
    real = srv.server_address[1]
    if hasattr(app, "prepare"):
        app.prepare(real)
    srv.socket = tls_context(d, ["http/1.1"]).wrap_socket(srv.socket, server_side=True)
    write_atomic(ready, json.dumps({"https_port": real}))
    srv.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["gen", "apns", "fcm", "webhook"])
    ap.add_argument("dir")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-streams", type=int, default=100)
    ap.add_argument("--ready-file", default="")
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.dir)
    elif a.cmd == "apns":
        Apns(a.dir, a.max_streams).run(a.port, a.ready_file)
    elif a.cmd == "fcm":
        run_http(a.dir, Fcm(a.dir), a.port, a.ready_file)
    else:
        run_http(a.dir, Webhook(a.dir), a.port, a.ready_file)


if __name__ == "__main__":
    main()
