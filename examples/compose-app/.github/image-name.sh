#!/usr/bin/env bash
# The one place the web image's name is made, for every workflow that needs it (build and push, verify, the
# server `.env` through sync-secrets): `<registry>/<owner>/<repository>/web`, all lowercase, as GHCR wants it.
#
#   REGISTRY=ghcr.io bash .github/image-name.sh
#
# The repository comes from GITHUB_REPOSITORY (`owner/name`), which the runner sets for every event. Not from
# `github.event.repository`: a `schedule` event has no repository object, which made the nightly sync's image
# name `ghcr.io/acme//web`. REGISTRY defaults to ghcr.io.
#
# Writes `image=<name>` to $GITHUB_OUTPUT (to stdout when it is unset).
set -euo pipefail
repository=${GITHUB_REPOSITORY:?GITHUB_REPOSITORY must be set (owner/name)}
registry=${REGISTRY:-ghcr.io}
image="${registry,,}/${repository,,}/web"
if [[ ! $repository =~ ^[^/]+/[^/]+$ || ! ${image#"${registry,,}"/} =~ ^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$ ]]; then
    echo "::error title=bad image name::$image is not a valid image name; rename the repository or change .github/image-name.sh"
    exit 1
fi
echo "image=$image" >>"${GITHUB_OUTPUT:-/dev/stdout}"
