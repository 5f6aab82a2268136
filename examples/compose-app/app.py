"""The example app: answers / with its version and /healthz with 200 once its settings are complete."""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

REQUIRED = ("SECRET_KEY", "POSTGRES_PASSWORD", "APP_MODE")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        missing = [k for k in REQUIRED if not os.environ.get(k)]
        if self.path == "/healthz":
            status, body = (503, "missing: " + ", ".join(missing)) if missing else (200, "ok")
        else:
            status, body = 200, "compose-app " + os.environ.get("APP_VERSION", "dev")
        data = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
