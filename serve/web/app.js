// MAI's chat page: streams replies from /v1/chat/completions (server-sent
// events over fetch), keeps the conversation, and remembers settings.
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;

const settings = ["system", "temperature", "top_p", "max_tokens", "seed", "api_key"];
for (const id of settings) {
  const saved = localStorage.getItem("mai." + id);
  if (saved !== null) $(id).value = saved;
  $(id).addEventListener("change", () => localStorage.setItem("mai." + id, $(id).value));
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function status(text) { $("status").textContent = text; }

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const label = document.createElement("span");
  label.className = "role";
  label.textContent = role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.append(label, body);
  $("messages").append(div);
  div.scrollIntoView({ block: "end" });
  return body;
}

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    const sel = $("model");
    sel.textContent = "";
    for (const m of j.data) {
      const o = document.createElement("option");
      o.value = o.textContent = m.id;
      sel.append(o);
    }
    const saved = localStorage.getItem("mai.model");
    if (saved && j.data.some((m) => m.id === saved)) sel.value = saved;
    status(j.data.length + " model(s)");
  } catch (e) {
    status("Could not list models: " + e.message);
  }
}
$("model").addEventListener("change", () => localStorage.setItem("mai.model", $("model").value));
$("api_key").addEventListener("change", loadModels);

function request() {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history);
  const body = {
    model: $("model").value,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
    max_tokens: Number($("max_tokens").value),
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  out.parentElement.classList.add("streaming");
  controller = new AbortController();
  $("send").hidden = true;
  $("stop").hidden = false;
  status("Generating…");
  const started = performance.now();
  let reply = "", usage = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request()), signal: controller.signal,
    });
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new Error(j.error ? j.error.message : r.status + " " + r.statusText);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message);
          if (j.usage) usage = j.usage;
          for (const c of j.choices || []) {
            if (c.delta && c.delta.content) {
              reply += c.delta.content;
              out.textContent = reply;
              out.parentElement.scrollIntoView({ block: "end" });
            }
          }
        }
      }
    }
    history.push({ role: "assistant", content: reply });
    const secs = (performance.now() - started) / 1000;
    status(usage ? `${usage.completion_tokens} tokens in ${secs.toFixed(1)} s` : `done in ${secs.toFixed(1)} s`);
  } catch (e) {
    if (e.name === "AbortError") {
      history.push({ role: "assistant", content: reply });
      status("Stopped");
    } else {
      history.pop();
      out.parentElement.className = "msg error";
      out.textContent = reply + (reply ? "\n" : "") + "Error: " + e.message;
      status("Error");
    }
  } finally {
    out.parentElement.classList.remove("streaming");
    out.parentElement.classList.add("done");
    controller = null;
    $("send").hidden = false;
    $("stop").hidden = true;
  }
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("form").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  history.length = 0;
  $("messages").textContent = "";
  status("New conversation");
});

loadModels();
