#!/usr/bin/env bash
# Runs the MCP conformance suite against promptseg's Streamable HTTP endpoint.
# Needs the npm registry once (npx fetches the suite). Scenarios that call the suite's own
# fixture tools, resources and prompts are listed, with reasons, in the expected-failures file.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8791}
VERSION=${CONFORMANCE_VERSION:-0.1.12}   # 0.1.13+ need Node 22 (fs.globSync)
npm run build --silent
PORT=$PORT PROMPTSEG_LOG_LEVEL=warn node dist/main/cli.js serve &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
npx -y "@modelcontextprotocol/conformance@$VERSION" server \
  --url "http://127.0.0.1:$PORT/mcp" \
  --expected-failures scripts/mcp-conformance-expected-failures.yml
