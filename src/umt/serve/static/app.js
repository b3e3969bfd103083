// umt serve: the page's script. Plain JavaScript, no build step, nothing fetched but this server.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function say(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

// The JSON of a response, or an Error carrying the server's one-line {"error": ...} message.
async function json(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `HTTP ${response.status} ${response.statusText}`);
  }
  return body;
}

async function loadInfo() {
  try {
    const info = await json(await fetch("/api/info"));
    $("info").textContent =
      `${info.videos} videos in ${info.index} · model ${info.checkpoint}` +
      (info.unreadable ? ` · ${info.unreadable} unreadable at indexing` : "");
    $("top-k").value = info.search_top_k;
    const c = info.classify;
    $("classify-mode").textContent = c ? `Classes: ${c.description}.` :
      "No classifier: start umt serve with --classifier CKPT or --labels FILE.";
    $("classify").disabled = !c;
    $("mask-mode").textContent = info.mask ? info.mask :
      "No semantic mask: umt serve was started with --no-mask.";
    $("upload-mask").disabled = !info.mask;
    document.body.dataset.mask = info.mask ? "yes" : "no";
  } catch (err) {
    say("search-status", err.message, true);
  }
}

function card(hit, rerank) {
  const score = rerank && hit.itm !== null
    ? `ITM ${hit.itm.toFixed(3)} · ITC ${hit.itc.toFixed(4)}` : `ITC ${hit.score.toFixed(4)}`;
  const maskButton = el("button", { type: "button", className: "mask-btn", textContent: "mask" });
  maskButton.disabled = document.body.dataset.mask === "no";
  maskButton.addEventListener("click", () => showMask(hit.mask, hit.name));
  return el("div", { className: "card", title: hit.path,
                     dataset: { row: hit.row, name: hit.name, rank: hit.rank } }, [
    el("video", { src: hit.video, poster: hit.thumbnail, controls: true, preload: "metadata",
                  muted: true, loop: true }),
    el("div", { className: "caption" }, [
      el("span", { className: "rank", textContent: `${hit.rank}.` }),
      el("span", { className: "name", textContent: hit.name }),
    ]),
    el("div", { className: "score", textContent: score }),
    maskButton,
  ]);
}

async function runSearch(event) {
  event.preventDefault();
  const query = $("query").value;
  const params = new URLSearchParams({ q: query, k: $("top-k").value,
                                       rerank: $("rerank").checked });
  $("search").disabled = true;
  say("search-status", "searching…");
  try {
    const found = await json(await fetch(`/api/search?${params}`));
    $("results").replaceChildren(...found.hits.map((h) => card(h, found.rerank)));
    say("search-status",
        `${found.hits.length} results for “${found.query}” in ${found.ms.toFixed(0)} ms` +
        (found.rerank ? " (ITM re-ranked)" : " (ITC)"));
  } catch (err) {
    $("results").replaceChildren();
    say("search-status", err.message, true);
  } finally {
    $("search").disabled = false;
  }
}

function uploadForm() {
  const file = $("upload").files[0];
  if (!file) throw new Error("choose a video clip first");
  const form = new FormData();
  form.append("file", file);
  return [form, file.name];
}

async function classify(event) {
  event.preventDefault();
  $("classify").disabled = true;
  say("classify-status", "classifying…");
  try {
    const [form] = uploadForm();
    const result = await json(await fetch("/api/classify", { method: "POST", body: form }));
    $("classes").replaceChildren(...result.top.map((t) => el("tr", { className: "class-row" }, [
      el("td", { className: "label", textContent: t.label }),
      el("td", { className: "pct", textContent: `${(100 * t.score).toFixed(1)}%` }),
      el("td", { className: "bar-cell" },
         [el("div", { className: "bar", style: `width:${Math.max(1, 100 * t.score)}%` })]),
    ])));
    say("classify-status", `${result.name}: top ${result.top.length} (${result.kind}) in ` +
        `${result.ms.toFixed(0)} ms`);
  } catch (err) {
    $("classes").replaceChildren();
    say("classify-status", err.message, true);
  } finally {
    $("classify").disabled = false;
  }
}

let maskUrl = null;

async function showMask(source, name, form = null) {
  say("mask-status", `drawing the semantic mask of ${name}…`);
  const img = $("mask-img");
  try {
    const response = form ? await fetch(source, { method: "POST", body: form }) : await fetch(source);
    if (!response.ok) await json(response);  // throws the server's message
    if (maskUrl) URL.revokeObjectURL(maskUrl);
    maskUrl = URL.createObjectURL(await response.blob());
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the mask image did not load"));
      img.src = maskUrl;
    });
    img.alt = `semantic mask of ${name}`;
    img.dataset.name = name;
    img.hidden = false;
    say("mask-status", `${name}: kept tokens outlined, dropped ones dimmed; the teacher's ` +
        "class-token attention below");
  } catch (err) {
    img.hidden = true;
    say("mask-status", err.message, true);
  }
}

function uploadMask() {
  try {
    const [form, name] = uploadForm();
    showMask("/api/mask", name, form);
  } catch (err) {
    say("mask-status", err.message, true);
  }
}

$("search-form").addEventListener("submit", runSearch);
$("classify-form").addEventListener("submit", classify);
$("upload-mask").addEventListener("click", uploadMask);
loadInfo();
