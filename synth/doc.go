// Package synth generates synthetic training data with a teacher model reached through
// any OpenAI-compatible chat completions endpoint (OpenAI, Azure OpenAI's v1 API, vLLM,
// Ollama, llama.cpp's server, mai serve).
//
// A run expands generators (instruction/response pairs, multi-turn chats, textbook
// passages over a topic tree, Go code exercises with solutions and tests, and rewrites
// of web documents) from templates and seed lists into a deterministic list of items.
// Workers complete the items concurrently through a client that bounds requests and
// tokens per minute, retries 429, 5xx, timeouts and dropped connections with
// exponential backoff and jitter (honouring Retry-After), and stores every answer in an
// append-only on-disk cache keyed by the request's hash, so that an interrupted run,
// rerun, never pays twice for a finished request. Outputs pass quality checks and the
// data pipeline's filters, are deduplicated (exact and MinHash near duplicates) and are
// written, in item order, as chat JSONL ready for supervised fine-tuning:
//
//	{"id":"instruct-000001","messages":[{"role":"user","content":"..."},{"role":"assistant","content":"..."}],"meta":{...}}
//
// The output is the same for the same configuration, cache and teacher answers,
// whatever the concurrency. See docs/synth.md.
package synth
