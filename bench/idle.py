#!/usr/bin/env python3
"""Opens N client connections to a MySQL-protocol server at once, logs each in
(mysql_native_password), keeps them idle for HOLD seconds, and prints how they fared.
Usage: idle.py HOST PORT USER DB N HOLD   (password in $MYSQL_PWD)"""
import hashlib
import os
import selectors
import socket
import struct
import sys
import time


def native_token(password: bytes, nonce: bytes) -> bytes:
    s1 = hashlib.sha1(password).digest()
    s2 = hashlib.sha1(s1).digest()
    mask = hashlib.sha1(nonce + s2).digest()
    return bytes(a ^ b for a, b in zip(s1, mask))


def packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def main() -> None:
    host, port, user, db, n, hold = sys.argv[1:7]
    port, n, hold = int(port), int(n), float(hold)
    password = os.environ.get("MYSQL_PWD", "").encode()
    sel = selectors.DefaultSelector()
    conns = {}
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((host, port))
        conns[s] = {"buf": b"", "state": "greeting"}
        sel.register(s, selectors.EVENT_READ)
    outcome = {"logged_in": 0, "refused_1040": 0, "other_error": 0, "closed": 0}
    deadline = time.time() + 30
    pending = n
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            c = conns[s]
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                outcome["closed"] += 1
                sel.unregister(s)
                pending -= 1
                continue
            c["buf"] += data
            if len(c["buf"]) < 4:
                continue
            length = int.from_bytes(c["buf"][:3], "little")
            if len(c["buf"]) < 4 + length:
                continue
            seq, p = c["buf"][3], c["buf"][4 : 4 + length]
            c["buf"] = c["buf"][4 + length :]
            if p[:1] == b"\xff":
                code = int.from_bytes(p[1:3], "little")
                outcome["refused_1040" if code == 1040 else "other_error"] += 1
                sel.unregister(s)
                pending -= 1
            elif c["state"] == "greeting":
                ver_end = p.index(b"\x00", 1)
                rest = p[ver_end + 1 :]
                nonce = rest[4:12] + rest[31:43]
                caps = 0x000AA20D  # 4.1, secure connection, plugin auth, with db, transactions
                resp = struct.pack("<IIB", caps, 1 << 24, 45) + b"\x00" * 23
                token = native_token(password, nonce)
                resp += user.encode() + b"\x00" + bytes([len(token)]) + token
                resp += db.encode() + b"\x00" + b"mysql_native_password\x00"
                s.setblocking(True)
                s.sendall(packet(seq + 1, resp))
                s.setblocking(False)
                c["state"] = "auth"
            elif p[:1] == b"\x00":
                outcome["logged_in"] += 1
                sel.unregister(s)
                pending -= 1
            else:
                outcome["other_error"] += 1
                sel.unregister(s)
                pending -= 1
    print(" ".join(f"{k}={v}" for k, v in outcome.items()), f"no_answer={pending}", flush=True)
    time.sleep(hold)
    for s in conns:
        s.close()


main()
