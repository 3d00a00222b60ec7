package serve

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mai-llm/mai/infer"
)

// findChromium returns a headless-capable Chromium or Chrome, or "".
func findChromium() string {
	if p := os.Getenv("MAI_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestWebPageInBrowser drives the chat page in headless Chromium: pick a
// model, send a message, and watch the reply stream in; it must equal the
// API's answer to the same request.
func TestWebPageInBrowser(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		t.Skip("no chromium on PATH (Debian: apt-get install chromium); set MAI_CHROMIUM to a browser binary")
	}
	ts := startServer(t, Config{}, infer.EngineConfig{})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	if err := chromedp.Do(ctx); err != nil {
		t.Skipf("chromium does not start here: %v", err)
	}
	err := chromedp.Do(ctx,
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("input")),
	)
	if err != nil {
		t.Fatal(err)
	}
	models, err := chromedp.Run(ctx, chromedp.Poll[int](`document.querySelectorAll("#model option").length || null`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("model"), "tiny"),
		chromedp.SetValue(chromedp.ID("temperature"), "0"),
		chromedp.SetValue(chromedp.ID("max_tokens"), "40"),
	)
	if err != nil {
		t.Fatal(err)
	}
	// Count how often the reply's text changes: more than once is
	// streaming.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.updates = 0;
		new MutationObserver(() => { const a = document.querySelector(".msg.assistant .text"); if (a && a.textContent) window.updates++; })
			.observe(document.getElementById("messages"), {subtree: true, childList: true, characterData: true}); true`)); err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("input"), "Hello there"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.WaitVisible(chromedp.CSS(".msg.assistant.done")),
	)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(".msg.assistant .text")))
	if err != nil {
		t.Fatal(err)
	}
	status, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("status")))
	if err != nil {
		t.Fatal(err)
	}
	updates, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.updates`))
	if err != nil {
		t.Fatal(err)
	}
	if models != 2 {
		t.Errorf("model picker lists %d models", models)
	}
	var resp ChatResponse
	post(t, ts.URL+"/v1/chat/completions", "", map[string]any{"model": "tiny", "temperature": 0, "top_p": 1, "max_tokens": 40,
		"messages": []map[string]string{{"role": "user", "content": "Hello there"}}}, &resp)
	want := *resp.Choices[0].Message.Content
	t.Logf("reply %q in %d updates; status %q", reply, updates, status)
	if reply == "" || reply != want {
		t.Errorf("page shows %q, API answers %q", reply, want)
	}
	if updates < 2 {
		t.Errorf("the reply appeared in %d update(s): not streamed", updates)
	}
	if !strings.Contains(status, "tokens") {
		t.Errorf("status %q lacks the token count", status)
	}
}
