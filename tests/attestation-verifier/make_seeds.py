#!/usr/bin/python3
"""Writes the attestation objects and clientDataJSON of the shared test vectors (decoded) and a
few hostile CBOR inputs into a seed corpus directory for fuzz_av."""
import base64, glob, json, os, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for path in glob.glob(os.path.join(src, "*", "*.json")):
    try:
        case = json.load(open(path))
        s = case["attestationObject"]
        blob = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        continue
    with open(os.path.join(out, case["id"]), "wb") as f:
        f.write(blob)
    s = case.get("clientDataJSON") or ""
    try:
        cdj = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        continue
    with open(os.path.join(out, case["id"] + ".cdj"), "wb") as f:
        f.write(cdj)
for name, blob in {
    "libcbor-bomb": bytes([0x9A, 0x10, 0, 0, 0]),
    "map-bomb": bytes([0xBB] + [0xFF] * 8),
    "indefinite": bytes([0x9F, 0x01, 0xFF]),
}.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)
