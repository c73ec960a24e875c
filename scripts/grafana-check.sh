#!/usr/bin/env bash
# Type-checks the Grafana dashboard against Grafana's published dashboard schema: the
# `Dashboard` type of npm's @grafana/schema, with TypeScript's compiler. Both are installed,
# pinned, under target/tools/grafana-check on first use. Exits non-zero, with tsc's errors,
# when the dashboard does not fit the schema.
set -euo pipefail
cd "$(dirname "$0")/.."
dashboard=${1:-deploy/grafana/pacs_exporter.json}
tools=target/tools/grafana-check
schema_version=13.2.3
typescript_version=5.9.3

if ! command -v npm >/dev/null 2>&1; then
  echo "grafana-check: npm is missing; install Node.js and npm (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi
mkdir -p "$tools"
if [ ! -f "$tools/node_modules/@grafana/schema/package.json" ] \
  || ! grep -q "\"version\": \"$schema_version\"" "$tools/node_modules/@grafana/schema/package.json" \
  || [ ! -x "$tools/node_modules/.bin/tsc" ]; then
  npm install --prefix "$tools" --silent --no-audit --no-fund \
    "@grafana/schema@$schema_version" "typescript@$typescript_version" >&2
fi

# The dashboard becomes a TypeScript constant of type Dashboard. JSON holds the schema's string
# enums as plain strings, so each enum is compared by its values (`${Enum}`).
{
  cat <<'TS'
import type { Dashboard } from '@grafana/schema';
type AsJson<T> = T extends string
  ? `${T}`
  : T extends (infer U)[]
    ? AsJson<U>[]
    : T extends object
      ? { [K in keyof T]: AsJson<T[K]> }
      : T;
export const dashboard: AsJson<Dashboard> =
TS
  cat "$dashboard"
  echo ';'
} > "$tools/check.ts"
cat > "$tools/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "strict": true,
    "noEmit": true,
    "module": "esnext",
    "moduleResolution": "bundler",
    "target": "es2020",
    "skipLibCheck": true
  },
  "files": ["check.ts"]
}
JSON
"$tools/node_modules/.bin/tsc" -p "$tools/tsconfig.json"
