// load_saved.cjs loads tokenizer.json + tokenizer_config.json directories
// with transformers.js (npm @lenml/tokenizers) and encodes texts, to check
// that tokenizers MAI saves load and encode the same outside MAI.
//
// Usage, where @lenml/tokenizers is installed:
//   node load_saved.cjs input.json > output.json
// input.json: {"dirs": [...], "texts": [...]}; output: {"<dir>": [[ids], ...]}
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const req = createRequire(path.join(process.cwd(), 'package.json'));
const { TokenizerLoader } = req('@lenml/tokenizers');
const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = {};
for (const dir of input.dirs) {
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
  });
  out[dir] = input.texts.map((t) => Array.from(tok.encode(t, { add_special_tokens: false })));
}
process.stdout.write(JSON.stringify(out));
