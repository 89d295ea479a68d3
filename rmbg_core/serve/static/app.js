// The web page of `rmbg serve`: send each picked or dropped image to v1/remove and show the result.
// Plain browser JavaScript, no build step and nothing fetched from elsewhere (works offline).
"use strict";

const PARALLEL = 3;          // requests at once; the server batches them into shared forward passes
const MAX_TRIES = 6;         // tries per image while the server answers 503 (busy or loading)

const $ = (selector) => document.querySelector(selector);
const token = $("#token");
const queue = [];
const items = [];
let running = 0;

token.value = sessionStorage.getItem("rmbg-token") || "";
token.addEventListener("change", () => sessionStorage.setItem("rmbg-token", token.value));

function options() {
  const params = new URLSearchParams();
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode === "mask") params.set("output", "mask");
  if (mode === "colour") params.set("background", $("#colour").value);
  params.set("format", $("#format").value);
  if ($("#foreground").checked && mode !== "mask") params.set("estimate_foreground", "true");
  return params;
}

function add(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/") && file.type !== "") continue;
    const node = $("#item").content.firstElementChild.cloneNode(true);
    node.querySelector(".original img").src = URL.createObjectURL(file);
    node.querySelector(".original figcaption").textContent = file.name;
    $("#results").append(node);
    const item = { file, node, result: null };
    items.push(item);
    queue.push(item);
  }
  $("#redo").disabled = items.length === 0;
  pump();
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const item = queue.shift();
    running += 1;
    process(item).finally(() => { running -= 1; pump(); });
  }
}

function show(item, state, text) {
  item.node.dataset.state = state;
  item.node.querySelector(".status").textContent = text;
}

async function process(item) {
  const params = options();
  show(item, "working", "working…");
  const headers = token.value ? { Authorization: `Bearer ${token.value}` } : {};
  for (let attempt = 1; attempt <= MAX_TRIES; attempt += 1) {
    const body = new FormData();
    body.append("image", item.file, item.file.name);
    let response;
    try {
      response = await fetch(`v1/remove?${params}`, { method: "POST", body, headers });
    } catch (error) {
      show(item, "error", `cannot reach the server (${error.message})`);
      return;
    }
    if (response.status === 503 && attempt < MAX_TRIES) {
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      show(item, "working", `server busy, retrying in ${seconds} s…`);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      continue;
    }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({ error: response.statusText }));
      const hint = response.status === 401 ? " (enter the token above)" : "";
      show(item, "error", `${response.status}: ${problem.error}${hint}`);
      return;
    }
    const kind = params.has("background") ? "composite" : params.get("output") || "cutout";
    finish(item, await response.blob(), params.get("format"), kind);
    return;
  }
}

function finish(item, blob, format, kind) {
  if (item.result) URL.revokeObjectURL(item.result);
  item.result = URL.createObjectURL(blob);
  item.node.querySelector(".result img").src = item.result;
  const stem = item.file.name.replace(/\.[^.]*$/, "") || "image";
  const link = item.node.querySelector(".download");
  link.href = item.result;
  link.download = `${stem}-${kind}.${format}`;
  link.hidden = false;
  show(item, "done", `${kind}, ${format.toUpperCase()}, ${Math.round(blob.size / 1024)} KB`);
}

const drop = $("#drop");
$("#files").addEventListener("change", (event) => { add(event.target.files); event.target.value = ""; });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  add(event.dataTransfer.files);
});
$("#redo").addEventListener("click", () => {
  for (const item of items) {
    if (!queue.includes(item)) queue.push(item);
    show(item, "waiting", "waiting");
  }
  pump();
});
