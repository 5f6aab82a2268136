"""Downloads artifacts as actions/download-artifact v4 does: this run's through the artifact service (twirp
ListArtifacts, GetSignedArtifactURL), another run's through the REST API (the run's artifacts, then the
artifact's zip, a redirect to a signed blob URL fetched without the token)."""
import base64
import io
import fnmatch
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile

SERVICE = "twirp/github.actions.results.api.v1.ArtifactService/"


def inp(name):
    return os.environ.get("INPUT_" + name, "").strip()


def fail(msg):
    print(f"::error title=download-artifact::{msg}")
    sys.exit(1)


def backend_ids():
    token = os.environ.get("ACTIONS_RUNTIME_TOKEN", "")
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        for scope in claims["scp"].split(" "):
            parts = scope.split(":")
            if parts[0] == "Actions.Results" and len(parts) == 3:
                return parts[1], parts[2]
    except (IndexError, KeyError, ValueError):
        pass
    fail("ACTIONS_RUNTIME_TOKEN has no Actions.Results scope: is the runner's artifact server on?")


def twirp(method, body):
    url = os.environ["ACTIONS_RESULTS_URL"].rstrip("/") + "/" + SERVICE + method
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer " + os.environ["ACTIONS_RUNTIME_TOKEN"])
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"{}")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def api(path, token):
    base = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    req = urllib.request.Request(base + path)
    req.add_header("Accept", "application/vnd.github+json")
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("X-GitHub-Api-Version", "2022-11-28")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=120) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def fetch(url):
    with urllib.request.urlopen(url, timeout=300) as r:
        return r.read()


def unzip(data, dest):
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for member in z.namelist():
            target = os.path.realpath(os.path.join(dest, member))
            if target != root and not target.startswith(root + os.sep):
                fail(f"the artifact holds a path outside the destination: {member}")
        z.extractall(dest)


def chosen(artifacts, name):
    """The artifacts to download: all when a name was given (the listing is filtered by it already), else those
    whose name matches `pattern` (every one when it is empty)."""
    pattern = inp("PATTERN")
    if name or not pattern:
        return artifacts
    return [a for a in artifacts if fnmatch.fnmatchcase(a["name"], pattern)]


def folder(dest, name, artifact):
    """An artifact's destination: `path` itself for a named one or with merge-multiple, else a folder of its name."""
    if name or inp("MERGE_MULTIPLE").lower() == "true":
        return dest
    return os.path.join(dest, artifact)


def from_other_run(run_id, token, name, dest):
    repo = inp("REPOSITORY") or os.environ["GITHUB_REPOSITORY"]
    query = "?per_page=100" + ("&name=" + urllib.parse.quote(name) if name else "")
    status, _, body = api(f"/repos/{repo}/actions/runs/{run_id}/artifacts{query}", token)
    if status != 200:
        fail(f"Unable to download artifact(s): listing the artifacts of run {run_id} answered {status}")
    artifacts = json.loads(body).get("artifacts", [])
    if name and not artifacts:
        fail(f"Unable to download artifact(s): Artifact not found for name: {name}")
    for a in chosen(artifacts, name):
        status, headers, body = api(f"/repos/{repo}/actions/artifacts/{a['id']}/zip", token)
        if status != 302 or not headers.get("Location"):
            fail(f"Unable to download artifact {a['name']}: the API answered {status} without a redirect")
        blob = urllib.parse.urljoin(os.environ.get("GITHUB_API_URL", "").rstrip("/") + "/", headers["Location"])
        unzip(fetch(blob), folder(dest, name, a["name"]))
        print(f"Artifact {a['name']} (run {run_id}) downloaded to {dest}")


def from_this_run(name, dest):
    run, job = backend_ids()
    body = {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job}
    if name:
        body["name_filter"] = name
    try:
        artifacts = twirp("ListArtifacts", body).get("artifacts", [])
    except urllib.error.URLError:
        artifacts = []
    if name and not artifacts:
        fail(f"Unable to download artifact(s): Artifact not found for name: {name}")
    for a in chosen(artifacts, name):
        signed = twirp("GetSignedArtifactURL", {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job,
                                                "name": a["name"]})
        url = signed.get("signedUrl") or signed.get("signed_url")
        if not url:
            fail(f"GetSignedArtifactURL gave no URL for {a['name']}")
        unzip(fetch(url), folder(dest, name, a["name"]))
        print(f"Artifact {a['name']} downloaded to {dest}")


def main():
    name = inp("NAME")
    dest = os.path.expanduser(inp("PATH") or os.environ["GITHUB_WORKSPACE"])
    run_id, token = inp("RUN_ID"), inp("GITHUB_TOKEN")
    if run_id and not token:
        fail("run-id needs github-token")
    if run_id:
        from_other_run(run_id, token, name, dest)
    else:
        from_this_run(name, dest)
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"download-path={os.path.abspath(dest)}\n")


main()
