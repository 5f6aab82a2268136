#!/usr/bin/env bash
# The one place the web image's name is made, for every workflow that needs it (build and push, verify, the
# server `.env` through sync-secrets): GHCR wants `ghcr.io/<owner>/<repository>/<name>`, all lowercase.
#
#   OWNER=<github.repository_owner> REPO=<github.event.repository.name> bash .github/image-name.sh
#
# Writes `image=<name>` to $GITHUB_OUTPUT (to stdout when it is unset).
set -euo pipefail
image="ghcr.io/${OWNER,,}/${REPO,,}/web"
if [[ ! ${image#ghcr.io/} =~ ^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$ ]]; then
    echo "::error title=bad image name::$image is not a valid image name; rename the repository or change .github/image-name.sh"
    exit 1
fi
echo "image=$image" >>"${GITHUB_OUTPUT:-/dev/stdout}"
