"""Mints an installation token as actions/create-github-app-token does: an RS256 JWT (signed by openssl with the
app's private key, which is written to a 0600 file for the signature only), the repository's installation, then
an access token limited to the repositories and permissions asked for. The token is masked before it is an
output."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def inp(name):
    return os.environ.get("INPUT_" + name, "").strip()


def fail(msg):
    print(f"::error title=create-github-app-token::{msg}")
    sys.exit(1)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(client_id, key_pem):
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    # As the real action (octokit's auth-app): issued 60 s in the past against clock drift, valid 10 minutes.
    claims = b64url(json.dumps({"iat": now - 60, "exp": now + 540, "iss": client_id}).encode())
    signing_input = f"{header}.{claims}".encode()
    fd, path = tempfile.mkstemp(prefix="app-key-")
    try:
        os.fchmod(fd, 0o600)
        # A key stored with escaped newlines is accepted, as the real action accepts it.
        os.write(fd, key_pem.replace("\\n", "\n").encode() + b"\n")
        os.close(fd)
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", path], input=signing_input,
                             capture_output=True, check=False)
    finally:
        os.unlink(path)
    if sig.returncode != 0:
        fail("the private key could not sign the JWT (is it the app's PEM key?)")
    return f"{header}.{claims}.{b64url(sig.stdout)}"


def call(method, url, token, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Accept", "application/vnd.github+json")
    req.add_header("X-GitHub-Api-Version", "2022-11-28")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        fail(f"{method} {url}: {e.code} {e.read().decode(errors='replace')[:300]}")


def main():
    client_id = inp("CLIENT_ID") or inp("APP_ID")
    if not client_id:
        fail("[client-id] input must be set to a non-empty string")
    api = (inp("GITHUB_API_URL") or os.environ.get("GITHUB_API_URL", "")).rstrip("/")
    owner = inp("OWNER")
    repos = [r.strip() for r in inp("REPOSITORIES").replace("\n", ",").split(",") if r.strip()]
    if not owner:
        owner, this = os.environ["GITHUB_REPOSITORY"].split("/", 1)
        if not repos:
            repos = [this]
    if not repos:
        fail("the stand-in mints tokens for named repositories only (set repositories, or leave owner unset)")
    permissions = {}
    for name in ("CONTENTS", "WORKFLOWS"):
        if inp("PERMISSION_" + name):
            permissions[name.lower()] = inp("PERMISSION_" + name)
    token = jwt(client_id, os.environ.get("INPUT_PRIVATE_KEY", ""))
    installation = call("GET", f"{api}/repos/{owner}/{repos[0]}/installation", token)
    body = {"repositories": repos}
    if permissions:
        body["permissions"] = permissions
    minted = call("POST", f"{api}/app/installations/{installation['id']}/access_tokens", token, body)
    print(f"::add-mask::{minted['token']}")
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"token={minted['token']}\n")
        out.write(f"installation-id={installation['id']}\n")
        out.write(f"app-slug={installation['app_slug']}\n")
    print(f"installation token for {', '.join(owner + '/' + r for r in repos)} "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(minted.get('permissions', {}).items()))})")


main()
