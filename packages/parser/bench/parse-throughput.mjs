#!/usr/bin/env node
// Parse-throughput benchmark: generates a large, varied Dockerfile in memory,
// parses it (parseDockerfile + toStages) several times and prints one JSON line.
// Usage: node packages/parser/bench/parse-throughput.mjs  (after `npx tsc -b packages/parser`)
import { parseDockerfile, toStages } from '../dist/index.js';

function generate(targetBytes) {
  const parts = ['# syntax=docker/dockerfile:1\nARG BASE=alpine:3.20\n'];
  let size = parts[0].length;
  for (let s = 0; size < targetBytes; s++) {
    const block =
      `FROM \${BASE} AS stage${s}\n` +
      `ENV A${s}=1 B${s}="two words" PATH=/usr/local/bin:$PATH\n` +
      `LABEL org.example.s${s}="v" other=x\n` +
      `RUN --mount=type=cache,target=/root/.cache apt-get update && \\\n    apt-get install -y curl git \\\n    && rm -rf /var/lib/apt/lists/*\n` +
      `COPY --from=stage${Math.max(0, s - 1)} --chown=1000:1000 --chmod=0755 /src/a /src/b /dst/\n` +
      `RUN <<EOF\nset -e\necho building ${s}\nEOF\n` +
      `WORKDIR /app\nEXPOSE 80 443/tcp\nHEALTHCHECK --interval=30s CMD ["curl", "-f", "http://localhost/"]\n` +
      `CMD ["node", "server.js"]\n\n`;
    parts.push(block);
    size += block.length;
  }
  return parts.join('');
}

const text = generate(2 * 1024 * 1024);
const bytes = Buffer.byteLength(text);
parseDockerfile(text); // warm-up
const runs = 5;
const t0 = process.hrtime.bigint();
let instructions = 0;
for (let i = 0; i < runs; i++) {
  const { ast } = parseDockerfile(text);
  instructions = ast.children.length;
  toStages(ast);
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ bench: 'parser-throughput', mbPerSec: +((bytes * runs) / (1024 * 1024) / secs).toFixed(2), bytes, instructions, runs, seconds: +secs.toFixed(3) }));
