package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	nurl "net/url"
	"strings"
	"unicode/utf8"

	"codeberg.org/readeck/go-readability/v2"
	"codeberg.org/readeck/go-readability/v2/render"
	"github.com/nlnwa/gowarc/v3"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// maxHTMLBytes caps the payload read from one WARC record.
const maxHTMLBytes = 8 << 20

// readWARC reads the HTML (and plain-text) responses of a WARC file, extracts their
// main text, and emits one "web" document per response.
func readWARC(path, source string, errs *errorLog, emit func(Document) error) error {
	// Default (warn) policies: with ErrIgnore policies gowarc v3.1.0 returned truncated
	// blocks for wget's records.
	wr, err := gowarc.NewWarcFileReader(path, 0)
	if err != nil {
		errs.add(path, err)
		return nil
	}
	defer wr.Close()
	for {
		rec, err := wr.Next()
		if errors.Is(err, io.EOF) && rec.WarcRecord == nil {
			return nil
		}
		if err != nil {
			rec.Close()
			errs.add(fmt.Sprintf("%s@%d", path, rec.Offset), fmt.Errorf("bad WARC record: %w", err))
			return nil // the stream cannot be resynchronized reliably
		}
		doc, ok, derr := warcDocument(rec.WarcRecord, rec.Validation)
		if derr != nil {
			errs.add(fmt.Sprintf("%s@%d", path, rec.Offset), derr)
		}
		rec.Close()
		if ok {
			doc.Source = source
			if err := emit(doc); err != nil {
				return err
			}
		}
	}
}

// warcDocument turns a response record into a document; ok is false for records that
// carry no text (requests, metadata, images, redirects).
func warcDocument(r gowarc.WarcRecord, validation []error) (doc Document, ok bool, err error) {
	if r.Type() != gowarc.Response {
		return doc, false, nil
	}
	if ct := r.WarcHeader().Get(gowarc.ContentType); !strings.HasPrefix(ct, "application/http") {
		return doc, false, nil
	}
	// Parse the HTTP message from the raw block: gowarc's parsed payload reader
	// returns a truncated body after the header has been parsed (seen with wget's
	// records), the raw block is complete.
	raw, rerr := r.Block().RawBytes()
	if rerr != nil {
		return doc, false, fmt.Errorf("read WARC block: %w", rerr)
	}
	// Read in small pieces: large reads from gowarc's block reader can come back short.
	msg, rerr := io.ReadAll(io.LimitReader(smallReads{raw}, maxHTMLBytes+64<<10))
	if rerr != nil {
		return doc, false, fmt.Errorf("read WARC block: %w", rerr)
	}
	resp, herr := http.ReadResponse(bufio.NewReader(bytes.NewReader(msg)), nil)
	if herr != nil {
		return doc, false, fmt.Errorf("parse HTTP response in WARC record: %w", herr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return doc, false, nil
	}
	ctype := resp.Header.Get("Content-Type")
	mt, params, _ := mime.ParseMediaType(ctype)
	if mt != "text/html" && mt != "application/xhtml+xml" && mt != "text/plain" {
		return doc, false, nil
	}
	body, berr := io.ReadAll(io.LimitReader(resp.Body, maxHTMLBytes))
	if berr != nil {
		return doc, false, fmt.Errorf("read WARC payload: %w", berr)
	}
	uri := r.WarcHeader().Get(gowarc.WarcTargetURI)
	if uri == "" {
		// wget writes WARC/1.0-style "<uri>" target URIs, which gowarc's validator
		// rejects and leaves out of the header; the rejected value is in the finding.
		for _, v := range validation {
			m := v.Error()
			if i, j := strings.Index(m, "Url: '"), strings.Index(m, "' at header WARC-Target-URI"); i >= 0 && j > i {
				uri = m[i+6 : j]
			}
		}
	}
	uri = strings.TrimSuffix(strings.TrimPrefix(uri, "<"), ">")
	doc = Document{ID: uri, Kind: "web", Meta: map[string]string{"url": uri}}
	if mt == "text/plain" {
		doc.Text = toUTF8(body, params["charset"])
	} else {
		doc.Text, doc.Meta["title"] = ExtractHTML(body, ctype, uri)
	}
	if doc.ID == "" {
		doc.ID = r.RecordId()
	}
	return doc, strings.TrimSpace(doc.Text) != "", nil
}

// smallReads caps every Read at 512 bytes.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 512)]) }

func toUTF8(b []byte, cs string) string {
	if utf8.Valid(b) {
		return string(b)
	}
	if e, _ := charset.Lookup(cs); e != nil {
		if out, err := e.NewDecoder().Bytes(b); err == nil {
			return string(out)
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// ExtractHTML returns the main text and title of an HTML page: the article content
// found by Readability when it finds one, and otherwise the visible text of the page
// without scripts, styles, navigation, headers, footers and forms.
func ExtractHTML(body []byte, contentType, pageURL string) (text, title string) {
	r, err := charset.NewReader(bytes.NewReader(body), contentType)
	if err != nil {
		r = bytes.NewReader(body)
	}
	root, err := html.Parse(r)
	if err != nil {
		return "", ""
	}
	u, _ := nurl.Parse(pageURL)
	fallback := visibleText(root)
	art, err := readability.FromDocument(root, u)
	if err == nil && art.Node != nil {
		t := normalizeExtracted(render.InnerText(art.Node))
		// Readability can pick a small box on pages that are not articles (indexes,
		// manuals); then the visible text is the better extraction.
		if len(t) >= len(fallback)/4 {
			return t, art.Title()
		}
		return fallback, art.Title()
	}
	return fallback, ""
}

// skipTags are elements whose text is never main content.
var skipTags = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Nav: true, atom.Header: true,
	atom.Footer: true, atom.Form: true, atom.Button: true, atom.Select: true, atom.Aside: true,
	atom.Iframe: true, atom.Svg: true, atom.Template: true, atom.Head: true, atom.Menu: true,
}

var blockTags = map[atom.Atom]bool{
	atom.P: true, atom.Div: true, atom.Br: true, atom.Li: true, atom.H1: true, atom.H2: true, atom.H3: true,
	atom.H4: true, atom.H5: true, atom.H6: true, atom.Tr: true, atom.Pre: true, atom.Blockquote: true,
	atom.Section: true, atom.Article: true, atom.Dt: true, atom.Dd: true, atom.Table: true, atom.Hr: true,
}

// visibleText is the text of the page outside boilerplate elements, one block per line.
func visibleText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node, bool)
	walk = func(n *html.Node, pre bool) {
		if n.Type == html.ElementNode {
			if skipTags[n.DataAtom] {
				return
			}
			for _, a := range n.Attr {
				if a.Key == "role" && (a.Val == "navigation" || a.Val == "banner" || a.Val == "contentinfo") ||
					a.Key == "hidden" || a.Key == "aria-hidden" && a.Val == "true" {
					return
				}
			}
			if n.DataAtom == atom.Pre {
				pre = true
			}
		}
		if n.Type == html.TextNode {
			if pre {
				b.WriteString(n.Data)
			} else {
				b.WriteString(strings.Join(strings.Fields(n.Data), " "))
				if len(n.Data) > 0 && strings.ContainsAny(n.Data[len(n.Data)-1:], " \n\t") {
					b.WriteByte(' ')
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, pre)
		}
		if n.Type == html.ElementNode && blockTags[n.DataAtom] {
			b.WriteByte('\n')
		}
	}
	walk(n, false)
	return normalizeExtracted(b.String())
}

// normalizeExtracted trims lines and collapses runs of blank lines.
func normalizeExtracted(s string) string {
	lines := strings.Split(s, "\n")
	out := lines[:0]
	blank := true
	for _, l := range lines {
		l = strings.TrimRight(strings.TrimLeft(l, " \t"), " \t\r")
		if l == "" {
			if !blank {
				out = append(out, "")
			}
			blank = true
			continue
		}
		blank = false
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
