package eval

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPassAtK(t *testing.T) {
	for _, tc := range []struct {
		n, c, k int
		want    float64
	}{
		{10, 0, 1, 0}, {10, 10, 1, 1}, {5, 1, 1, 0.2}, {10, 3, 5, 1 - 21.0/252}, {10, 3, 8, 1}, {1, 1, 1, 1}, {20, 1, 10, 0.5},
	} {
		if got := PassAtK(tc.n, tc.c, tc.k); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("PassAtK(%d, %d, %d) = %v, want %v", tc.n, tc.c, tc.k, got, tc.want)
		}
	}
}

func TestAssembleGo(t *testing.T) {
	for _, tc := range []struct{ name, prompt, completion, want string }{
		{"cut at the function's end", "package p\n\nfunc F() int {\n", "\treturn 1\n}\n\nfunc G() {}\n", "package p\n\nfunc F() int {\n\treturn 1\n}\n"},
		{"add a missing import", "package p\n\nfunc F(s string) string {\n", "\treturn strings.ToUpper(s)\n}", "package p\n\nimport (\n\t\"strings\"\n)\n\nfunc F(s string) string {\n\treturn strings.ToUpper(s)\n}\n"},
		{"drop an unused import", "package p\n\nimport \"sort\"\n\nfunc F(a []int) int {\n", "\treturn len(a)\n}", "package p\n\nfunc F(a []int) int {\n\treturn len(a)\n}\n"},
		{"a local named like a package", "package p\n\nfunc F(strings []string) int {\n", "\treturn len(strings)\n}", "package p\n\nfunc F(strings []string) int {\n\treturn len(strings)\n}\n"},
		{"unparsable source is left alone", "package p\n\nfunc F() {\n", "\treturn (\n", "package p\n\nfunc F() {\n\treturn (\n\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := assembleGo(tc.prompt, tc.completion); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// userGoCache returns the go command's own build cache, where the standard
// library is already compiled: a fresh private cache (the default) would
// spend the first minutes of the test compiling it.
func userGoCache(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func FuzzAssembleGo(f *testing.F) {
	f.Add("package p\n\nimport \"sort\"\n\nfunc F(s string) string {\n", "\treturn strings.ToUpper(s)\n}")
	f.Add("package p\n//line x.go:10\nimport (\n\t\"fmt\"\n)\nfunc F() {\n", "\tfmt.Println(strconv.Itoa(1))\n}\nfunc G() {}")
	f.Add("\ufeffpackage p; import \"os\"; func F() {", "os.Exit(1) }")
	f.Fuzz(func(t *testing.T, prompt, completion string) {
		out := assembleGo(prompt, completion)
		if !strings.HasSuffix(out, "}\n") {
			t.Fatalf("assembled source does not end the function: %q", out)
		}
	})
}

const sbPrompt = "package solution\n\n// Do does the task.\nfunc Do() error {\n"

// TestSandbox runs completions that behave, misbehave and attack the host,
// and checks each is scored as it should be while the host stays untouched.
func TestSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Go test binaries")
	}
	iso := SandboxIsolation()
	t.Logf("isolation: %s %s", iso.Level, iso.Warning)
	host := t.TempDir()
	hostFile := filepath.Join(host, "escape.txt")
	tmpName := fmt.Sprintf("/tmp/mai-eval-escape-%d", time.Now().UnixNano())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	test := "package solution\n\nimport \"testing\"\n\nfunc TestDo(t *testing.T) {\n\tif err := Do(); err != nil {\n\t\tt.Fatal(err)\n\t}\n}\n"
	opt := SandboxOptions{Timeout: 3 * time.Second, GoCache: userGoCache(t)}
	for _, tc := range []struct {
		name, completion string
		pass, timeout    bool
		isolated         bool // needs namespaces to be scored as failed
	}{
		{name: "correct", completion: "\treturn nil\n}", pass: true},
		{name: "wrong", completion: "\treturn errors.New(\"no\")\n}"},
		{name: "does not compile", completion: "\treturn nil +\n}"},
		{name: "writes in its own folder", completion: "\treturn os.WriteFile(\"scratch.txt\", []byte(\"ok\"), 0o644)\n}", pass: true},
		{name: "loops forever", completion: "\tfor {\n\t}\n}", timeout: true},
		{name: "writes outside its folder", completion: fmt.Sprintf("\treturn os.WriteFile(%q, []byte(\"pwned\"), 0o644)\n}", hostFile), isolated: true},
		{name: "writes to /tmp", completion: fmt.Sprintf("\tos.WriteFile(%q, []byte(\"pwned\"), 0o644)\n\treturn errors.New(\"tried\")\n}", tmpName)},
		{name: "opens a network connection", completion: fmt.Sprintf("\tc, err := net.DialTimeout(\"tcp\", %q, time.Second)\n\tif err != nil {\n\t\treturn err\n\t}\n\treturn c.Close()\n}", ln.Addr().String()), isolated: true},
		{name: "writes a huge file", completion: "\tb := make([]byte, 1<<20)\n\tf, err := os.Create(\"big\")\n\tif err != nil {\n\t\treturn err\n\t}\n\tfor i := 0; i < 64; i++ {\n\t\tif _, err := f.Write(b); err != nil {\n\t\t\treturn err\n\t\t}\n\t}\n\treturn f.Close()\n}"},
		{name: "prints without end", completion: "\tfor {\n\t\tfmt.Println(\"spam spam spam spam spam spam spam spam\")\n\t}\n}", timeout: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r, err := RunGoTest(context.Background(), sbPrompt, tc.completion, test, opt)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if tc.isolated && iso.Level == "limits" {
				t.Skipf("no namespaces here: %s", iso.Warning)
			}
			if r.Passed != tc.pass {
				t.Errorf("passed = %v, want %v; output:\n%s", r.Passed, tc.pass, r.Output)
			}
			if r.TimedOut != tc.timeout {
				t.Errorf("timed out = %v, want %v; output:\n%s", r.TimedOut, tc.timeout, r.Output)
			}
			if len(r.Output) > opt.OutputBytes+(64<<10)+200 {
				t.Errorf("kept %d bytes of output, over the cap", len(r.Output))
			}
			t.Logf("%s in %v, output %d bytes: %.200q", map[bool]string{true: "passed", false: "failed"}[r.Passed], took.Round(time.Millisecond), len(r.Output), r.Output)
		})
	}
	t.Cleanup(func() {
		if _, err := os.Stat(hostFile); err == nil {
			t.Errorf("a completion wrote %s on the host", hostFile)
		}
		if _, err := os.Stat(tmpName); err == nil && iso.Level != "limits" {
			os.Remove(tmpName)
			t.Errorf("a completion wrote %s on the host", tmpName)
		}
		if n := accepted.Load(); n > 0 && iso.Level != "limits" {
			t.Errorf("the host listener accepted %d connections from the sandbox", n)
		}
		if strings.HasPrefix(tmpName, "/tmp/") {
			os.Remove(tmpName)
		}
	})
}
