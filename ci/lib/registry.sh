# shellcheck shell=bash
# Helpers shared by ci/demo and ci/bench: a throw-away docker-registry on 127.0.0.1.
# Usage: start_registry DIR  → sets REG_ADDR (127.0.0.1:PORT) and REG_PID; stop_registry.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start_registry() {
  local dir=$1 port
  port=$(free_port)
  mkdir -p "$dir/storage"
  cat > "$dir/config.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
  /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  REG_PID=$!
  REG_ADDR=127.0.0.1:$port
  for _ in $(seq 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$REG_ADDR/v2/', timeout=1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "registry did not start; log: $(cat "$dir/registry.log")" >&2
  return 1
}

stop_registry() {
  if [ -n "${REG_PID:-}" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  REG_PID=
}

# push_layout LAYOUT_DIR TAG REPO:TAG — copies an OCI layout (all platforms) to the registry.
push_layout() {
  skopeo copy -q --all --dest-tls-verify=false "oci:$1:$2" "docker://$REG_ADDR/$3" >/dev/null
}
