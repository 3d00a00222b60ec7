// gpt_tokenizer.cjs encodes texts with the npm package gpt-tokenizer (a
// JavaScript implementation of tiktoken's encodings, whose regular
// expressions run on V8), for the Go tests of package tokenizer.
//
// Usage, in a directory where gpt-tokenizer is installed:
//   node gpt_tokenizer.cjs input.json > output.json
// input.json: {"texts": [...]}; output: {"cl100k_base": [[ids], ...], "o200k_base": [...]}
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const req = createRequire(path.join(process.cwd(), 'package.json'));
const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = {};
for (const name of ['cl100k_base', 'o200k_base']) {
  const enc = req('gpt-tokenizer/cjs/encoding/' + name);
  out[name] = input.texts.map((t) => Array.from(enc.encode(t, { disallowedSpecial: new Set() })));
}
process.stdout.write(JSON.stringify(out));
