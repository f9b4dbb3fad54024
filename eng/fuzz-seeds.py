#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the unit tests' public vectors and captured packets.

Usage: python3 eng/fuzz-seeds.py DIR   (eng/fuzz.sh calls it; the hello and rendezvous seeds come from PeerLink.Fuzz seeds)
Sources (named in tests/PeerLink.Tests/TestData/README.md): mdns/*.json (Avahi capture, esp-mdns/dns-packet packets),
stun/rfc5769.json (RFC 5769 and RFC 8489 vectors), noise/snow.json and cacophony.json (the first message of the XX and IK vectors over Curve25519).
"""
import json, pathlib, sys

root = pathlib.Path(__file__).resolve().parent.parent / "tests/PeerLink.Tests/TestData"
out = pathlib.Path(sys.argv[1])

def write(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

for f in ["mdns/avahi-lab-capture.json", "mdns/esp-mdns-real-packets.json"]:  # noqa
    doc = json.loads((root / f).read_text())
    for i, p in enumerate(doc.get("frames", []) + doc.get("vectors", [])):
        if "hex" in p:
            for target in ("dns", "mdns"):
                write(target, f"{pathlib.Path(f).stem}-{i}", bytes.fromhex(p["hex"]))

doc = json.loads((root / "stun/rfc5769.json").read_text())
for section in ("rfc5769", "rfc8489"):
    for i, v in enumerate(doc[section]):
        if "hex" in v:
            for target in ("stun", "stun-server"):
                write(target, f"{section}-{i}", bytes.fromhex(v["hex"]))

for f in ("snow", "cacophony"):
    doc = json.loads((root / f"noise/{f}.json").read_text())
    for target, pattern in (("noise-xx", "XX"), ("noise-ik", "IK")):
        for i, v in enumerate(x for x in doc["vectors"] if x["protocol_name"].startswith(f"Noise_{pattern}_25519_")):
            write(target, f"{f}-{i}", bytes.fromhex(v["messages"][0]["ciphertext"]))
