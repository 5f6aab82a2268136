#!/usr/bin/env bash
# Fetches the run's commit from the testbed's git folder, as actions/checkout fetches it from GitHub.
set -euo pipefail
repositories=${GANGPLANK_ACT_REPOSITORIES:?the harness sets GANGPLANK_ACT_REPOSITORIES, the testbed git folder}
src=$repositories/$GITHUB_REPOSITORY
[[ -d $src ]] || { echo "::error title=checkout::no repository $GITHUB_REPOSITORY in the testbed git folder"; exit 1; }
dest=$GITHUB_WORKSPACE
[[ -n $INPUT_PATH ]] && dest=$GITHUB_WORKSPACE/$INPUT_PATH
ref=${INPUT_REF:-$GITHUB_SHA}
depth=()
[[ ${INPUT_FETCH_DEPTH:-1} != 0 ]] && depth=(--depth "${INPUT_FETCH_DEPTH:-1}")
mkdir -p "$dest"
cd "$dest"
[[ -d .git ]] || git init -q .
git config --local safe.directory "$dest"
# `origin` is the repository, as actions/checkout sets it (https://github.com/<owner>/<name> there): a job
# that pushes (the release workflow's tags) pushes there, with credentials of its own.
if git remote get-url origin >/dev/null 2>&1; then
    git remote set-url origin "file://$src"
else
    git remote add origin "file://$src"
fi
git fetch -q --no-tags "${depth[@]}" origin "$ref"
git checkout -q --force --detach FETCH_HEAD
git clean -ffdxq
echo "checked out $(git rev-parse HEAD) into $dest"
