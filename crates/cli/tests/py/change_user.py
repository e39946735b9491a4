"""COM_CHANGE_USER through libmariadb (the C client the `mariadb` CLI and mysqltest use) on a
session whose login the router answered from its pool. Prints, one per line, the outcome of
a change_user with the right password, then of one with a wrong password.
Usage: PW=... python3 change_user.py PORT"""
import ctypes
import os
import sys
import time

L = ctypes.CDLL("libmariadb.so.3")
L.mysql_init.restype = ctypes.c_void_p
L.mysql_init.argtypes = [ctypes.c_void_p]
L.mysql_real_connect.restype = ctypes.c_void_p
L.mysql_real_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.c_char_p, ctypes.c_uint, ctypes.c_char_p, ctypes.c_ulong]
L.mysql_errno.argtypes = [ctypes.c_void_p]
L.mysql_thread_id.restype = ctypes.c_ulong
L.mysql_thread_id.argtypes = [ctypes.c_void_p]
L.mysql_change_user.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
L.mysql_close.argtypes = [ctypes.c_void_p]
port, pw = int(sys.argv[1]), os.environ["PW"].encode()


def connect():
    m = L.mysql_init(None)
    if not L.mysql_real_connect(m, b"127.0.0.1", b"wordpress", pw, b"wordpress", port, None, 0):
        sys.exit(f"connect failed: {L.mysql_errno(m)}")
    return m


closed = set()  # thread ids of connections this script's sessions left to the pool
for password in (pw, b"wrong"):
    # Sessions until one is greeted with a connection an earlier session left (the router
    # resets and pools it once the session ends).
    for _ in range(50):
        m = connect()
        tid = L.mysql_thread_id(m)
        if tid in closed:
            break
        closed.add(tid)
        L.mysql_close(m)
        time.sleep(0.05)
    else:
        sys.exit("no session was greeted with a pooled connection")
    rc = L.mysql_change_user(m, b"wordpress", password, b"wordpress")
    print("pooled", "ok" if rc == 0 else L.mysql_errno(m))
    L.mysql_close(m)
