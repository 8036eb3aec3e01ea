#!/usr/bin/python3
"""repl_pty.py BIN HOME: drives `moonbert repl` on a pseudo-terminal for tests/spec/repl_spec.lua.

Types a line, Ctrl-C over a half-typed line, Ctrl-C on a continuation line, an expression,
mb.tok<Tab>, then reads ~/.moonbert_history while the REPL still runs and kills it (SIGKILL,
so nothing is saved at exit). Prints what the terminal showed, a line "=== HISTORY ===",
the history file, and "=== ALIVE <0|1> ===" (whether the REPL was still running).
"""
import os
import pty
import select
import signal
import sys
import time

BIN, HOME = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = HOME
    os.environ["TERM"] = "dumb"
    os.execv(BIN, [BIN, "repl"])

seen = b""


def expect(s, timeout=30):
    global seen
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return False
            seen += chunk
            if s.encode() in seen.split(b"<<MARK>>")[-1]:
                seen += b"<<MARK>>"
                return True
    return False


expect("> ")
os.write(fd, b"x = 41\r")
expect("> ")
os.write(fd, b"half typed")
time.sleep(0.3)
os.write(fd, b"\x03")
expect("> ")
os.write(fd, b"for i = 1, 2 do\r")
expect(">> ")
os.write(fd, b"\x03")
time.sleep(0.3)
os.write(fd, b"x + 1\r")
expect("42")
os.write(fd, b"mb.tok\t")
expect("mb.tokenizer")
os.write(fd, b"\x15")  # readline: kill the line
time.sleep(0.5)
try:
    hist = open(os.path.join(HOME, ".moonbert_history")).read()
except OSError:
    hist = "(no history file)"
alive = os.waitpid(pid, os.WNOHANG)[0] == 0
if alive:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
sys.stdout.write(seen.replace(b"<<MARK>>", b"").decode("utf-8", "replace"))
sys.stdout.write("\n=== HISTORY ===\n" + hist + "=== ALIVE %d ===\n" % int(alive))
