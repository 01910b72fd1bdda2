#!/usr/bin/env bash
# scripts/test-user.sh [PYTHON]: the normal user that tests/control/test_image_rootless.py
# runs a control plane as, so that its pods run in rootless podman (Debian 12, run as root).
#
# Idempotent. Makes sure that the user (PODSWEEP_TEST_USER, default podsweep-test):
# - exists, with a home directory (rootless podman keeps its image store there);
# - has ranges of subordinate uids and gids in /etc/subuid and /etc/subgid (rootless podman
#   maps a container's users other than root into them; newuidmap, from uidmap, sets that up);
# - can reach this checkout and PYTHON (default: scripts/find-python 3.11, what .venv is made
#   from): a directory above either that is closed to others (pyenv's /root, mode 0700) gets
#   an ACL entry that lets this one user through, to names it knows, and nothing more.
# Prints the user's name.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=${PODSWEEP_TEST_USER:-podsweep-test}
PYTHON=$(readlink -f "${1:-$(scripts/find-python 3.11)}")
COUNT=65536

[[ $(id -u) == 0 ]] || { echo "test-user.sh: run as root (it adds a user)" >&2; exit 1; }
missing=()
command -v setfacl >/dev/null 2>&1 || missing+=(acl)
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

id -u "$NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$NAME"

# useradd allocates the ranges itself where login.defs asks it to (Debian's does); else the
# first free range above every range already given out
for file in /etc/subuid /etc/subgid; do
  touch "$file"
  grep -q "^$NAME:" "$file" && continue
  start=$(awk -F: -v c=$COUNT 'BEGIN { top = 100000 }
    { if ($2 + $3 > top) top = $2 + $3 } END { print (int((top + c - 1) / c) * c) }' "$file")
  flag=--add-subuids; [[ $file == /etc/subgid ]] && flag=--add-subgids
  usermod "$flag" "$start-$((start + COUNT - 1))" "$NAME"
done

# from / down: a directory counts as closed only once its parents let the user through
for target in "$PYTHON" "$PWD"; do
  [[ -d $target ]] || target=$(dirname "$target")
  path=""
  for part in $(tr / ' ' <<<"$target"); do
    path="$path/$part"
    runuser -u "$NAME" -- test -x "$path" || setfacl -m "u:$NAME:x" "$path"
  done
done
echo "$NAME"
