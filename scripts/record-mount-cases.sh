#!/usr/bin/env bash
# Records test/fixtures/mount-cases/*/expected.json from docker build (docker 20.10, BuildKit).
# Needs a running dockerd with busybox:latest loaded (the conformance base) and ssh-agent.
#   scripts/record-mount-cases.sh [CASE...]
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cases=$here/test/fixtures/mount-cases
DOCKER=${DOCKER:-/usr/bin/docker}
imagetree=$here/../shared/conformance/imagetree.py
work=$(mktemp -d /tmp/mount-cases.XXXXXX)
eval "$(ssh-agent -s -a "$work/agent.sock")" >/dev/null
trap 'kill $SSH_AGENT_PID; rm -rf "$work"' EXIT
names=("$@"); [ ${#names[@]} -eq 0 ] && names=($(ls "$cases"))
for name in "${names[@]}"; do
  dir=$cases/$name
  mapfile -t args < <(python3 -c 'import json,sys,os; [print(a.replace("${CASE}", sys.argv[2]).replace("${AGENT}", sys.argv[3])) for a in json.load(open(sys.argv[1])).get("args", [])]' "$dir/case.json" "$dir" "$work/agent.sock")
  ctx=$work/ctx-$name; mkdir -p "$ctx"; cp -R "$dir/context/." "$ctx/"
  find "$ctx" -type d -exec chmod 0755 {} +; find "$ctx" -type f -exec chmod 0644 {} +
  if DOCKER_BUILDKIT=1 $DOCKER build --no-cache -q -f "$dir/Dockerfile" "${args[@]}" -t "mount-case-$name" "$ctx" >"$work/$name.log" 2>&1; then
    $DOCKER save "mount-case-$name" -o "$work/$name.tar"
    python3 - "$imagetree" "$work/$name.tar" >"$dir/expected.json" <<'PY'
import json, subprocess, sys
out = json.loads(subprocess.check_output(["python3", sys.argv[1], "show", sys.argv[2]]))
out["oracle"] = "docker 20.10.24 (BuildKit)"
json.dump(out, sys.stdout, indent=1, sort_keys=True)
PY
    echo "recorded $name"
  else
    printf '{\n "error": true,\n "message": %s,\n "oracle": "docker 20.10.24 (BuildKit)"\n}\n' "$(tail -1 "$work/$name.log" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')" >"$dir/expected.json"
    echo "recorded $name (docker refuses it: $(tail -1 "$work/$name.log"))"
  fi
done
