// Drives a MAI server with the official `openai` npm client, unmodified.
// Usage: MAI_BASE_URL=http://127.0.0.1:PORT/v1 MAI_API_KEY=key node openai_client.mjs
// It needs a server with the byte-level model "tiny" and the token-id
// model "llama" (see serve/node_test.go). Exit status 1 on any failure.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.MAI_BASE_URL, apiKey: process.env.MAI_API_KEY, maxRetries: 0 });
let failed = 0;
function check(cond, what, detail) {
  if (cond) {
    console.log("ok   " + what);
  } else {
    failed++;
    console.log("FAIL " + what + (detail === undefined ? "" : ": " + JSON.stringify(detail)));
  }
}

const models = await client.models.list();
const ids = [];
for await (const m of models) ids.push(m.id);
check(ids.includes("tiny") && ids.includes("llama"), "models.list", ids);

const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Say hi" }];
const chat = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2 });
const content = chat.choices[0].message.content;
check(chat.object === "chat.completion" && typeof content === "string" && chat.usage.completion_tokens > 0, "chat.completions.create", chat.usage);
check(chat.choices[0].logprobs.content.length === chat.usage.completion_tokens, "chat logprobs", chat.choices[0].logprobs.content.length);

const stream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
let streamed = "", chunks = 0, usage = null, finish = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.content) streamed += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(streamed === content && chunks > 2 && finish && usage && usage.completion_tokens === chat.usage.completion_tokens, "chat streaming", { streamed, content, chunks, finish, usage });

const prompt = [1, 27, 300, 4, 99, 12, 7, 450];
const comp = await client.completions.create({ model: "llama", prompt, max_tokens: 1, temperature: 0, logprobs: 2, echo: true });
const lp = comp.choices[0].logprobs;
check(lp.token_logprobs.length === prompt.length + 1 && lp.token_logprobs[0] === null && lp.token_logprobs.slice(1).every((x) => x < 0)
  && lp.top_logprobs.length === prompt.length + 1 && comp.usage.prompt_tokens === prompt.length, "completions logprobs+echo", lp.token_logprobs);

const comp2 = await client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 8, temperature: 0, logprobs: 1 });
check(comp2.choices[0].logprobs.tokens.length === comp2.usage.completion_tokens, "completions text prompt", comp2.usage);

for (const encoding_format of [undefined, "float"]) {
  const emb = await client.embeddings.create({ model: "tiny", input: ["hello", "world!"], ...(encoding_format ? { encoding_format } : {}) });
  check(emb.data.length === 2 && emb.data[0].embedding.length === 128 && emb.data[0].embedding.every(Number.isFinite) && emb.usage.prompt_tokens === 11,
    "embeddings.create " + (encoding_format || "(default base64)"), { n: emb.data.length, dim: emb.data[0].embedding.length, usage: emb.usage });
}

let jsonDone = 0;
for (const seed of [1, 2, 3, 4]) {
  const js = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Reply in JSON." }], max_tokens: 150, seed,
    response_format: { type: "json_object" } });
  const c = js.choices[0];
  if (c.finish_reason !== "stop") continue; // a random model may pad until max_tokens
  jsonDone++;
  let ok = false;
  try { ok = typeof JSON.parse(c.message.content) === "object"; } catch (e) { ok = false; }
  check(ok, "JSON mode (seed " + seed + ")", c.message.content);
}
check(jsonDone > 0, "JSON mode finished at least once", jsonDone);

const schema = { type: "object", properties: { answer: { enum: ["yes", "no"] }, confident: { type: "boolean" } }, required: ["answer", "confident"], additionalProperties: false };
const structured = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Yes or no?" }], max_tokens: 150, seed: 9,
  response_format: { type: "json_schema", json_schema: { name: "verdict", schema, strict: true } } });
if (structured.choices[0].finish_reason === "stop") {
  const v = JSON.parse(structured.choices[0].message.content);
  check(["yes", "no"].includes(v.answer) && typeof v.confident === "boolean", "json_schema output follows the schema", v);
}

try {
  await client.chat.completions.create({ model: "no-such-model", messages });
  check(false, "unknown model is an error");
} catch (e) {
  check(e.status === 404 && e.code === "model_not_found", "unknown model is a 404", { status: e.status, code: e.code });
}
try {
  await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "x".repeat(400) }] });
  check(false, "oversize prompt is an error");
} catch (e) {
  check(e.status === 400 && /context length/.test(e.message), "oversize prompt is a 400 that says so", { status: e.status, message: e.message });
}
const wrong = new OpenAI({ baseURL: process.env.MAI_BASE_URL, apiKey: "wrong", maxRetries: 0 });
try {
  await wrong.models.list();
  check(false, "wrong key is an error");
} catch (e) {
  check(e.status === 401, "wrong key is a 401", e.status);
}

if (failed > 0) {
  console.log(failed + " check(s) failed");
  process.exit(1);
}
console.log("all checks passed");
