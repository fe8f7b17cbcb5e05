#!/usr/bin/env bash
# Installs the real agent CLIs that tests/real_cli.rs drives, at pinned
# versions, into .cache/agent-clis/ (git ignores it). Idempotent: when the
# pinned versions are there already it only checks and returns.
#
#   tests/agent-clis/install.sh                      # install (or check) them
#   WRANGLE_AGENT_CLIS=/elsewhere tests/agent-clis/install.sh
#
# The tests look for the binaries in the same place (node_modules/.bin/
# of that directory); without them they say SKIPPED.
set -euo pipefail

# Pinned: the versions the tests were written against. Both packages ship
# a native binary for linux-x64 as an optional dependency.
CLAUDE_CODE_VERSION=2.1.332
CODEX_VERSION=0.171.0

root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${WRANGLE_AGENT_CLIS:-$root/.cache/agent-clis}"
want="@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION @openai/codex@$CODEX_VERSION"

command -v npm >/dev/null || { echo "agent CLIs: npm is missing, not installed" >&2; exit 1; }
mkdir -p "$dir"

installed() {
  [ "$(cat "$dir/installed" 2>/dev/null)" = "$want" ] &&
    [ -x "$dir/node_modules/.bin/claude" ] && [ -x "$dir/node_modules/.bin/codex" ]
}

if ! installed; then
  # A package.json of its own, so that npm installs here and not in a
  # parent project, and exactly these versions.
  cat > "$dir/package.json" <<JSON
{
  "name": "wrangle-agent-clis",
  "private": true,
  "dependencies": {
    "@anthropic-ai/claude-code": "$CLAUDE_CODE_VERSION",
    "@openai/codex": "$CODEX_VERSION"
  }
}
JSON
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$dir/installed"
fi

# Both must run, not only be there (a missing native part fails here).
claude_version="$("$dir/node_modules/.bin/claude" --version)"
codex_version="$("$dir/node_modules/.bin/codex" --version)"
echo "agent CLIs in $dir: claude $claude_version, $codex_version"
