#!/usr/bin/python3
"""hub_server.py ROOT: a Hugging Face Hub stand-in on loopback for tests/spec/hub_spec.lua.

Serves ROOT/<repo>/<file> at /<repo>/resolve/<rev>/<file> (and /datasets/<repo>/... from
ROOT/datasets/<repo>/<file>), as huggingface.co lays out its URLs, with what clients rely on:
HEAD and GET, Content-Length, `Range: bytes=N-` (206 Partial Content), and X-Linked-Size /
X-Linked-Etag (the file's sha256, as the hub sends for LFS files).

Faults, read from ROOT/faults.json at each request: {"<url path>": {"truncate": N, "times": K}}
sends the full Content-Length but only the first N bytes of the body and then closes the
connection, for the next K GET requests of that path (K absent: always).
Every request is appended to ROOT/requests.log as "METHOD PATH RANGE".
Binds 127.0.0.1 port 0 and prints the port on the first line of stdout.
"""
import hashlib
import http.server
import json
import os
import re
import sys

ROOT = sys.argv[1]
COUNTS = {}


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _file(self):
        m = re.match(r"^/(datasets/)?(.+)/resolve/[^/]+/(.+)$", self.path)
        if not m:
            return None
        path = os.path.join(ROOT, (m.group(1) or ""), m.group(2), m.group(3))
        return path if os.path.isfile(path) else None

    def _serve(self, body):
        with open(os.path.join(ROOT, "requests.log"), "a") as log:
            log.write("%s %s %s\n" % (self.command, self.path, self.headers.get("Range", "-")))
        path = self._file()
        if path is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        rng = self.headers.get("Range")
        m = re.match(r"^bytes=(\d+)-$", rng or "")
        if m:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        part = data[start:]
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("X-Linked-Etag", '"%s"' % hashlib.sha256(data).hexdigest())
        self.end_headers()
        if not body:
            return
        fault = {}
        try:
            with open(os.path.join(ROOT, "faults.json")) as f:
                faults = json.load(f)
            fault = faults.get(self.path, {}) if isinstance(faults, dict) else {}
        except (OSError, ValueError):
            pass
        n = COUNTS.get(self.path, 0)
        if "truncate" in fault and ("times" not in fault or n < fault["times"]):
            COUNTS[self.path] = n + 1
            self.wfile.write(part[: fault["truncate"]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)

    def do_GET(self):
        self._serve(True)

    def do_HEAD(self):
        self._serve(False)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
print(server.server_address[1], flush=True)
server.serve_forever()
