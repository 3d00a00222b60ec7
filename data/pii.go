package data

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// PIIConfig selects what redaction replaces. Matches are replaced with typed
// placeholders: <EMAIL>, <PHONE>, <IP_ADDRESS>, <CREDIT_CARD>, <SECRET>.
type PIIConfig struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
	Email   bool `yaml:"email" json:"email"`
	Phone   bool `yaml:"phone" json:"phone"`
	IP      bool `yaml:"ip" json:"ip"`
	Card    bool `yaml:"credit_card" json:"credit_card"`
	Secret  bool `yaml:"secret" json:"secret"`
	// KeepPrivateIPs leaves loopback, private and unspecified addresses alone
	// (127.0.0.1 in code is not personal data).
	KeepPrivateIPs bool `yaml:"keep_private_ips" json:"keep_private_ips"`
}

// DefaultPIIConfig redacts everything and keeps private IP addresses.
func DefaultPIIConfig() PIIConfig {
	return PIIConfig{Enabled: true, Email: true, Phone: true, IP: true, Card: true, Secret: true, KeepPrivateIPs: true}
}

var (
	secretREs = []*regexp.Regexp{
		regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----`),
		regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`),                                      // AWS access key id
		regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36,255}\b`),                                  // GitHub token
		regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{22,255}\b`),                                // GitHub fine-grained token
		regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}\b`),                                       // GitLab token
		regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}\b`),                                  // Slack token
		regexp.MustCompile(`\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b`),                           // OpenAI/Anthropic-style key
		regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`),                                          // Google API key
		regexp.MustCompile(`\b[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}\b`),                          // Stripe key
		regexp.MustCompile(`\bhf_[A-Za-z0-9]{30,}\b`),                                            // model-hub token
		regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`), // JWT
	}
	// assignedSecretRE finds key = "value" assignments whose value looks random.
	assignedSecretRE = regexp.MustCompile(`(?i)\b(?:api[_-]?key|secret[_-]?key|secret|access[_-]?token|auth[_-]?token|password|passwd)\b["']?\s*[:=]\s*["']?([A-Za-z0-9_\-/+=.]{16,})`)
	emailRE          = regexp.MustCompile(`\b[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b`)
	cardRE           = regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)
	ipv4RE           = regexp.MustCompile(`\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b`)
	ipv6RE           = regexp.MustCompile(`\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b|\b(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}\b`)
	phoneRE          = regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b|\+\d{1,3}(?:[ .-]\d{2,4}){2,5}\b`)
)

// secretLiterals are substrings one of which each secret pattern needs.
var secretLiterals = [][]string{{"PRIVATE KEY-----"}, {"AKIA", "ASIA"}, {"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, {"github_pat_"},
	{"glpat-"}, {"xox"}, {"sk-"}, {"AIza"}, {"k_live_", "k_test_"}, {"hf_"}, {"eyJ"}}

// secretKeywords start the assignments assignedSecretRE looks for.
var secretKeywords = []string{"key", "secret", "token", "passw"}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// Redact replaces PII in text and adds the counts by type to counts.
//
// Patterns run only on candidate spans found by a linear byte scan (runs of address
// characters around an '@', runs of digits and separators with enough digits), so the
// cost on ordinary prose is one pass over the text per pattern family.
func (c *PIIConfig) Redact(text string, counts map[string]int64) string {
	if !c.Enabled {
		return text
	}
	if c.Secret {
		for i, re := range secretREs {
			if containsAny(text, secretLiterals[i]) {
				text = replaceCount(re, text, "<SECRET>", "secret", counts, nil)
			}
		}
		text = redactAssignedSecrets(text, counts)
	}
	if c.Email && strings.IndexByte(text, '@') >= 0 {
		spans := candidateSpans(text, isEmailByte, func(s string) bool { return strings.IndexByte(s, '@') > 0 })
		text = replaceSpans(emailRE, text, spans, "<EMAIL>", "email", counts, nil)
	}
	if c.Card || c.IP || c.Phone {
		text = c.redactNumbers(text, counts)
	}
	if c.IP && strings.Contains(text, ":") {
		spans := candidateSpans(text, isHexColonByte, func(s string) bool { return strings.Count(s, ":") >= 2 && len(s) >= 6 })
		text = replaceSpans(ipv6RE, text, spans, "<IP_ADDRESS>", "ip_address", counts, c.publicIP)
	}
	return text
}

func (c *PIIConfig) publicIP(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	return !(c.KeepPrivateIPs && (a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsMulticast()))
}

var numByte = func() (t [256]bool) {
	for _, b := range []byte("0123456789 .-()+") {
		t[b] = true
	}
	return
}()

// redactNumbers finds runs of digits and separators with enough digits for a card
// number, phone number or IPv4 address, and runs the card, IP and phone patterns on
// each run (with one byte of context either side, so that \b sees the neighbours).
func (c *PIIConfig) redactNumbers(text string, counts map[string]int64) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(text); {
		if !numByte[text[i]] {
			i++
			continue
		}
		j := i + 1
		digits, dots := 0, 0
		for j < len(text) && numByte[text[j]] {
			j++
		}
		if j-i < 7 {
			i = j
			continue
		}
		for k := i; k < j; k++ {
			if text[k] >= '0' && text[k] <= '9' {
				digits++
			} else if text[k] == '.' {
				dots++
			}
		}
		if digits < 7 && !(digits >= 4 && dots >= 3) {
			i = j
			continue
		}
		lo, hi := max(0, i-1), min(len(text), j+1)
		w := text[lo:hi]
		lctx, rctx := lo < i, hi > j
		inside := func(w string, m []int) bool {
			return (!lctx || m[0] >= 1) && (!rctx || m[1] <= len(w)-1)
		}
		sub := func(w string, re *regexp.Regexp, repl, key string, ok func(string) bool) string {
			idx := re.FindAllStringIndex(w, -1)
			if len(idx) == 0 {
				return w
			}
			var o strings.Builder
			p := 0
			for _, m := range idx {
				if !inside(w, m) || ok != nil && !ok(w[m[0]:m[1]]) {
					continue
				}
				o.WriteString(w[p:m[0]])
				o.WriteString(repl)
				p = m[1]
				counts[key]++
			}
			if p == 0 {
				return w
			}
			o.WriteString(w[p:])
			return o.String()
		}
		orig := w
		if c.Card && digits >= 13 {
			w = sub(w, cardRE, "<CREDIT_CARD>", "credit_card", luhn)
		}
		if c.IP && dots >= 3 {
			w = sub(w, ipv4RE, "<IP_ADDRESS>", "ip_address", c.publicIP)
		}
		if c.Phone && digits >= 10 {
			w = sub(w, phoneRE, "<PHONE>", "phone", nil)
		}
		if w != orig {
			if b.Len() == 0 {
				b.Grow(len(text))
			}
			if lo < last {
				// The left context byte ended the previous window; it is never replaced.
				w, lo = w[last-lo:], last
			}
			b.WriteString(text[last:lo])
			b.WriteString(w)
			last = hi
		}
		i = j
	}
	if last == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

// redactAssignedSecrets replaces random-looking values assigned to keys named like
// secrets. The pattern runs only on windows around the keywords.
func redactAssignedSecrets(text string, counts map[string]int64) string {
	low := strings.ToLower(text)
	if !containsAny(low, secretKeywords) {
		return text
	}
	// Windows [k-24, k+300) around each keyword, merged.
	var wins [][2]int
	for _, kw := range secretKeywords {
		for off := 0; ; {
			i := strings.Index(low[off:], kw)
			if i < 0 {
				break
			}
			k := off + i
			wins = append(wins, [2]int{max(0, k-24), min(len(text), k+300)})
			off = k + len(kw)
		}
	}
	slices.SortFunc(wins, func(a, b [2]int) int { return a[0] - b[0] })
	merged := wins[:1]
	for _, w := range wins[1:] {
		if l := &merged[len(merged)-1]; w[0] <= l[1] {
			l[1] = max(l[1], w[1])
		} else {
			merged = append(merged, w)
		}
	}
	var b strings.Builder
	last := 0
	for _, w := range merged {
		for _, m := range assignedSecretRE.FindAllStringSubmatchIndex(text[w[0]:w[1]], -1) {
			s, e := w[0]+m[2], w[0]+m[3]
			// A match must not start at the window's cut edge (its \b would be wrong).
			if w[0] > 0 && m[0] == 0 || s < last || !looksRandom(text[s:e]) {
				continue
			}
			b.WriteString(text[last:s])
			b.WriteString("<SECRET>")
			last = e
			counts["secret"]++
		}
	}
	if last == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

func isEmailByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '%' || b == '+' || b == '-' || b == '@'
}

func isHexColonByte(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' || b == ':'
}

// candidateSpans returns the maximal runs of bytes in the set that pass keep.
func candidateSpans(text string, in func(byte) bool, keep func(string) bool) [][2]int {
	var out [][2]int
	for i := 0; i < len(text); {
		if !in(text[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(text) && in(text[j]) {
			j++
		}
		if keep(text[i:j]) {
			out = append(out, [2]int{i, j})
		}
		i = j
	}
	return out
}

// replaceSpans runs re on each span (with one byte of context either side, so that
// \b sees the true neighbours) and replaces the matches that lie inside the span.
func replaceSpans(re *regexp.Regexp, text string, spans [][2]int, repl, key string, counts map[string]int64, ok func(string) bool) string {
	if len(spans) == 0 {
		return text
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		lo, hi := max(0, sp[0]-1), min(len(text), sp[1]+1)
		for _, m := range re.FindAllStringIndex(text[lo:hi], -1) {
			s, e := lo+m[0], lo+m[1]
			if s < sp[0] || e > sp[1] || s < last {
				continue
			}
			if ok != nil && !ok(text[s:e]) {
				continue
			}
			if b.Len() == 0 {
				b.Grow(len(text))
			}
			b.WriteString(text[last:s])
			b.WriteString(repl)
			last = e
			counts[key]++
		}
	}
	if last == 0 && b.Len() == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

func replaceCount(re *regexp.Regexp, text, repl, key string, counts map[string]int64, ok func(string) bool) string {
	idx := re.FindAllStringIndex(text, -1)
	if len(idx) == 0 {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	last := 0
	for _, m := range idx {
		if ok != nil && !ok(text[m[0]:m[1]]) {
			continue
		}
		b.WriteString(text[last:m[0]])
		b.WriteString(repl)
		last = m[1]
		counts[key]++
	}
	b.WriteString(text[last:])
	return b.String()
}

// luhn checks a card number's check digit (separators ignored, 13 to 19 digits).
func luhn(s string) bool {
	var digits []int
	for _, r := range s {
		if r >= '0' && r <= '9' {
			digits = append(digits, int(r-'0'))
		}
	}
	if len(digits) < 13 || len(digits) > 19 {
		return false
	}
	allSame := true
	for _, d := range digits {
		if d != digits[0] {
			allSame = false
		}
	}
	if allSame {
		return false
	}
	sum := 0
	for i := range digits {
		d := digits[len(digits)-1-i]
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// looksRandom tells a secret value from a word or placeholder: it needs letters and
// digits, and no long run of one character class.
func looksRandom(v string) bool {
	var upper, lower, digit bool
	for _, r := range v {
		switch {
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= '0' && r <= '9':
			digit = true
		}
	}
	return digit && (upper || lower)
}
