// Package data turns raw text, source code, JSONL, Parquet and WARC web archives
// into clean, deduplicated, tokenized training shards, and reads those shards back
// for training.
//
// The pipeline (see [Prepare]) streams documents through readers, HTML extraction,
// quality filters (length, language, Gopher quality and repetition, C4, FineWeb line
// rules), PII redaction, benchmark decontamination, exact and MinHash-LSH near
// deduplication, weighted mixing and tokenization. It runs in parallel over input
// tasks, keeps memory bounded, and can be killed at any moment and restarted: a
// restarted run redoes only unfinished tasks and writes byte-identical shards.
//
// The shard format is documented in docs/data.md and in [ShardHeader]. The training
// loader ([OpenShards], [NewLoader]) reads shards deterministically: a seeded,
// memory-free permutation of fixed-length sequences per epoch, a per-rank partition
// of each global batch, and an exact resume cursor ([LoaderState]).
package data
