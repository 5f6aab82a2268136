"""Uploads an artifact as actions/upload-artifact v4 does: twirp CreateArtifact, the zip to the signed upload
URL (one block, then the block list), FinalizeArtifact with its size and SHA-256."""
import base64
import glob
import hashlib
import io
import json
import os
import sys
import urllib.request
import zipfile

SERVICE = "twirp/github.actions.results.api.v1.ArtifactService/"


def inp(name, default=""):
    return os.environ.get("INPUT_" + name, default).strip()


def fail(msg):
    print(f"::error title=upload-artifact::{msg}")
    sys.exit(1)


def backend_ids():
    """(run, job) backend ids from the runtime token's scope, `Actions.Results:<run>:<job>`, as the toolkit reads them."""
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


def put(url, data):
    req = urllib.request.Request(url, data=data, method="PUT")
    req.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(req, timeout=300) as r:
        r.read()


def hidden(rel):
    return any(part.startswith(".") for part in rel.split(os.sep))


def collect(patterns, include_hidden):
    """(absolute path, name in the zip) of every file, named relative to the least common ancestor of the
    searched paths, as upload-artifact names them."""
    files, roots = [], []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        for match in sorted(glob.glob(pattern, recursive=True)):
            match = os.path.abspath(match)
            if os.path.isdir(match):
                roots.append(match)
                for dirpath, _, names in os.walk(match):
                    files.extend(os.path.join(dirpath, n) for n in names)
            elif os.path.isfile(match):
                roots.append(os.path.dirname(match))
                files.append(match)
    if not files:
        return []
    root = os.path.commonpath(roots)
    out = []
    for f in sorted(set(files)):
        rel = os.path.relpath(f, root)
        if include_hidden or not hidden(rel):
            out.append((f, rel))
    return out


def main():
    name = inp("NAME") or "artifact"
    patterns = [line.strip() for line in inp("PATH").splitlines() if line.strip()]
    files = collect(patterns, inp("INCLUDE_HIDDEN_FILES") == "true")
    if not files:
        how = inp("IF_NO_FILES_FOUND") or "warn"
        msg = f"No files were found with the provided path: {inp('PATH')}. No artifacts will be uploaded."
        if how == "error":
            fail(msg)
        if how == "warn":
            print(f"::warning::{msg}")
        else:
            print(msg)
        return
    run, job = backend_ids()
    try:
        listed = twirp("ListArtifacts", {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job,
                                         "name_filter": name})
    except OSError:
        # act's server fails this call for a run that has no artifact yet (its folder does not exist).
        listed = {}
    if listed.get("artifacts"):
        if inp("OVERWRITE") != "true":
            fail(f"Failed to CreateArtifact: an artifact with this name already exists on the workflow run: {name}")
        twirp("DeleteArtifact", {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job, "name": name})
    buf = io.BytesIO()
    level = int(inp("COMPRESSION_LEVEL") or "6")
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for path, rel in files:
            z.write(path, rel)
    data = buf.getvalue()
    created = twirp("CreateArtifact", {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job,
                                       "name": name, "version": 4})
    upload_url = created.get("signedUploadUrl") or created.get("signed_upload_url")
    if not created.get("ok") or not upload_url:
        fail(f"CreateArtifact: the artifact service did not accept {name}")
    put(upload_url + "&comp=block", data)
    put(upload_url + "&comp=blocklist", b"")
    digest = hashlib.sha256(data).hexdigest()
    final = twirp("FinalizeArtifact", {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job,
                                       "name": name, "size": str(len(data)), "hash": "sha256:" + digest})
    artifact_id = str(final.get("artifactId") or final.get("artifact_id") or "")
    if not final.get("ok") or not artifact_id:
        fail(f"FinalizeArtifact: the artifact service did not finalize {name}")
    url = "{}/{}/actions/runs/{}/artifacts/{}".format(
        os.environ.get("GITHUB_SERVER_URL", ""), os.environ.get("GITHUB_REPOSITORY", ""),
        os.environ.get("GITHUB_RUN_ID", ""), artifact_id)
    print(f"Artifact {name} has been successfully uploaded! Final size is {len(data)} bytes. Artifact ID is {artifact_id}")
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(f"artifact-id={artifact_id}\nartifact-url={url}\nartifact-digest={digest}\n")


main()
