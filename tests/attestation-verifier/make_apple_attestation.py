#!/usr/bin/python3
"""Makes a fresh, valid `apple` (Apple Anonymous Attestation) registration for a given
challenge, signed by a throw-away test CA, for tests that need a positive attestation at the
time of receipt (the real Apple vectors have expired leaves).

  make_apple_attestation.py --challenge-hex HEX --rp-id example.org \
      --origin https://example.org --out-dir DIR

Writes DIR/apple.pem (the test CA: use DIR as the verifier's --trust-anchors-dir) and prints
{"attestationObject": b64url, "clientDataJSON": b64url} on stdout (the gateway's
deviceAttestation header is base64url of exactly this JSON). Needs python3-cryptography."""
import argparse, base64, datetime, hashlib, json, os, struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)


def cbor(v):
    if isinstance(v, bool):
        return bytes([0xF5 if v else 0xF4])
    if isinstance(v, int):
        return cbor_head(0, v) if v >= 0 else cbor_head(1, -1 - v)
    if isinstance(v, bytes):
        return cbor_head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return cbor_head(3, len(b)) + b
    if isinstance(v, list):
        return cbor_head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return cbor_head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--challenge-hex", required=True)
    ap.add_argument("--rp-id", required=True)
    ap.add_argument("--origin", required=True)
    ap.add_argument("--out-dir", required=True)
    a = ap.parse_args()
    now = datetime.datetime.now(datetime.timezone.utc)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    # A unique name per run: a test may trust several of these CAs at once (one apple.pem), and
    # chain building picks the issuer by subject name (these certificates carry no key ids).
    ca_name = x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "Tigress test Apple-format CA " + os.urandom(8).hex())])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    cred_key = ec.generate_private_key(ec.SECP256R1())
    nums = cred_key.public_key().public_numbers()
    cose = {1: 2, 3: -7, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
    cred_id = os.urandom(32)
    auth_data = (hashlib.sha256(a.rp_id.encode()).digest() + bytes([0x45]) + b"\0\0\0\0"
                 + b"\0" * 16 + struct.pack(">H", len(cred_id)) + cred_id + cbor(cose))
    cdj = json.dumps({"type": "webauthn.create",
                      "challenge": b64url(bytes.fromhex(a.challenge_hex)),
                      "origin": a.origin, "crossOrigin": False}, separators=(",", ":")).encode()
    nonce = hashlib.sha256(auth_data + hashlib.sha256(cdj).digest()).digest()
    ext = bytes([0x30, 0x24, 0xA1, 0x22, 0x04, 0x20]) + nonce
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test credential")]))
            .issuer_name(ca_name).public_key(cred_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3))
            .add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.2.840.113635.100.8.2"), ext), critical=False)
            .sign(ca_key, hashes.SHA256()))
    att = cbor({"fmt": "apple",
                "attStmt": {"x5c": [leaf.public_bytes(serialization.Encoding.DER)]},
                "authData": auth_data})
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "apple.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    print(json.dumps({"attestationObject": b64url(att), "clientDataJSON": b64url(cdj)}))


if __name__ == "__main__":
    main()
