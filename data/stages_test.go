package data

import (
	"os"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	c := DefaultPIIConfig()
	for _, tc := range []struct {
		in, want string
		key      string
	}{
		{"mail me at john.doe+x@example.co.uk today", "mail me at <EMAIL> today", "email"},
		{"call (555) 123-4567 or +44 20 7946 0958.", "call <PHONE> or <PHONE>.", "phone"},
		{"server 93.184.216.34 and 10.0.0.1 and 127.0.0.1", "server <IP_ADDRESS> and 10.0.0.1 and 127.0.0.1", "ip_address"},
		{"v6 2001:db8:85a3:0:0:8a2e:370:7334 here", "v6 <IP_ADDRESS> here", "ip_address"},
		{"card 4111 1111 1111 1111 ok", "card <CREDIT_CARD> ok", "credit_card"},
		{"not a card 4111 1111 1111 1112 ok", "not a card 4111 1111 1111 1112 ok", ""},
		{"key AKIAIOSFODNN7EXAMPLE end", "key <SECRET> end", "secret"},
		{"tok ghp_abcdefghijklmnopqrstuvwxyz0123456789AB end", "tok <SECRET> end", "secret"},
		{`api_key = "a8F3kL9qZ2xW7vB4nM1c"`, `api_key = "<SECRET>"`, "secret"},
		{`password: correcthorsebatterystaple`, `password: correcthorsebatterystaple`, ""},
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----", "<SECRET>", "secret"},
		{"version 1.2.3 and year 1999 stay", "version 1.2.3 and year 1999 stay", ""},
	} {
		counts := map[string]int64{}
		got := c.Redact(tc.in, counts)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.key != "" && counts[tc.key] == 0 {
			t.Errorf("Redact(%q): no %s counted (%v)", tc.in, tc.key, counts)
		}
	}
}

func TestFilters(t *testing.T) {
	good := strings.Repeat("The river ran past the village and the people of the harbor went to see it with their children. ", 8)
	fc := DefaultFilterConfig()
	for _, tc := range []struct {
		f      Filter
		kind   string
		text   string
		keep   bool
		reason string
	}{
		{&fc.Length, "text", "short", false, "too_short"},
		{&fc.GopherQuality, "text", good, true, ""},
		{&fc.GopherQuality, "text", "word " + strings.Repeat("x ", 60), false, "below_avg_word_length"},
		{&fc.GopherQuality, "text", strings.Repeat("# heading and the text with it\n", 30), false, "too_many_hashes"},
		{&fc.GopherQuality, "code", "x", true, ""},
		{&fc.GopherRepetition, "text", strings.Repeat("same line here\n", 20) + good, false, "dup_line_frac"},
		{&fc.C4, "web", good + "\nLorem ipsum dolor sit amet, consectetur.", false, "lorem_ipsum"},
		{&fc.C4, "web", good + "\nfunction f() { return 1; }.", false, "curly_bracket"},
		{&fc.C4, "web", "One line only.", false, "too_few_sentences"},
		{&fc.FineWeb, "web", "menu\nhome\nabout\ncontact\n" + strings.Repeat("a\n", 10), false, "line_punct_ratio"},
	} {
		d := Document{Text: tc.text, Kind: tc.kind}
		keep, why := tc.f.Keep(&d)
		if keep != tc.keep || why != tc.reason {
			t.Errorf("%s(%.30q): keep %v %q, want %v %q", tc.f.Name(), tc.text, keep, why, tc.keep, tc.reason)
		}
	}
	// C4 removes lines without terminal punctuation and keeps the rest.
	d := Document{Kind: "web", Text: "Home | About | Contact\n" + good + "\nShare this page\n" + good}
	if keep, _ := fc.C4.Keep(&d); !keep || strings.Contains(d.Text, "Home") || strings.Contains(d.Text, "Share") {
		t.Errorf("C4 line filtering: keep %v text %.60q", keep, d.Text)
	}
	lf := fc.Language
	if err := lf.init(); err != nil {
		t.Fatal(err)
	}
	de := Document{Kind: "text", Text: "Der Fluss floss am Dorf vorbei, und die Leute aus dem Hafen gingen mit ihren Kindern hin, um ihn zu sehen."}
	if keep, why := lf.Keep(&de); keep || why != "other_language" {
		t.Errorf("German text kept by an English filter: %v %q", keep, why)
	}
	en := Document{Kind: "text", Text: good}
	if keep, _ := lf.Keep(&en); !keep || en.Lang != "en" {
		t.Errorf("English text dropped or not labelled: lang %q", en.Lang)
	}
	bad := BadWordsFilter{Enabled: true}
	if err := bad.init(); err != nil {
		t.Fatal(err)
	}
	if keep, _ := bad.Keep(&Document{Text: "Watch free PORN now"}); keep {
		t.Error("bad word not found")
	}
	if keep, _ := bad.Keep(&Document{Text: "Scunthorpe is a town"}); !keep {
		t.Error("bad word matched inside another word")
	}
}

func TestDecontaminate(t *testing.T) {
	dir := t.TempDir()
	evalPath := dir + "/eval.jsonl"
	writeJSONL(t, evalPath, []string{"What is the capital of France? The capital of France is Paris, a city on the Seine river."})
	d, err := newDecontaminator(&DecontamConfig{EvalFiles: []string{evalPath}, NGram: 13})
	if err != nil {
		t.Fatal(err)
	}
	leak := "Some blog wrote: what is the capital of france the capital of France is Paris, a city on the seine... and more."
	if !d.contaminated(normalizeWords(leak)) {
		t.Error("document quoting the eval example not caught")
	}
	if d.contaminated(normalizeWords("The capital of France is Paris. It is on a river.")) {
		t.Error("short overlap flagged")
	}
}

func TestOptimalBands(t *testing.T) {
	for _, tc := range []struct {
		t    float64
		b, r int
	}{{0.75, 11, 11}} {
		if b, r := optimalBands(tc.t, 128); b != tc.b || r != tc.r {
			t.Errorf("optimalBands(%v) = %d x %d, want %d x %d", tc.t, b, r, tc.b, tc.r)
		}
	}
	// The estimate tracks the true Jaccard similarity.
	c := DefaultDedupConfig()
	c.resolve()
	m := newMinHasher(&c)
	a := prose(1, 400)
	ws := strings.Fields(a)
	for i := 0; i < len(ws); i += 25 {
		ws[i] = "zebra"
	}
	bText := strings.Join(ws, " ")
	sa, sb := make([]uint32, c.Permutations), make([]uint32, c.Permutations)
	m.signature(normalizeWords(a), sa)
	m.signature(normalizeWords(bText), sb)
	j, est := Jaccard(a, bText, 5), jaccardEstimate(sa, sb)
	if est < j-0.12 || est > j+0.12 {
		t.Errorf("MinHash estimate %.3f, true Jaccard %.3f", est, j)
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("a@b.co 4111 1111 1111 1111 93.184.216.34 api_key=abcdef0123456789XYZ")
	f.Add("(555) 123-4567")
	c := DefaultPIIConfig()
	f.Fuzz(func(t *testing.T, s string) {
		c.Redact(s, map[string]int64{})
	})
}

func FuzzExtractHTML(f *testing.F) {
	f.Add([]byte("<html><body><nav>menu</nav><p>Hello <b>world</b>.</p><script>x()</script></body></html>"))
	f.Add([]byte("<p>unclosed <div"))
	f.Fuzz(func(t *testing.T, b []byte) {
		text, _ := ExtractHTML(b, "text/html", "http://example.com/")
		if strings.Contains(text, "x()") && !strings.Contains(string(b), "x()</") {
			return
		}
	})
}

func FuzzReadWARC(f *testing.F) {
	rec := "WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:e9a0cecc-0221-11e7-adb1-0242ac120008>\r\n" +
		"WARC-Date: 2017-03-06T04:03:53Z\r\nWARC-Target-URI: http://example.com/\r\nContent-Type: application/http;msgtype=response\r\n" +
		"Content-Length: 88\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 31\r\n\r\n<html><p>Hello there.</p></html>\r\n\r\n"
	f.Add([]byte(rec))
	f.Add([]byte("WARC/1.0\r\n\r\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := dir + "/x.warc"
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var errs errorLog
		readWARC(p, "s", &errs, func(Document) error { return nil })
	})
}
