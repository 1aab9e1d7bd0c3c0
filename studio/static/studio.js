// The face browser: thumbnails load lazily (only those scrolled into view), selection by
// click / shift-click / ctrl-click, delete and restore through the studio's API.
"use strict";
const $ = (id) => document.getElementById(id);
let faces = [];
let selected = new Set();
let anchor = null;

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                          headers: {"Content-Type": "application/json"}};
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function visible() {
  const person = $("person").value, origin = $("origin").value, dropped = $("dropped").checked;
  return faces.filter((f) => (dropped || !f.dropped) && (person === "" || String(f.person) === person)
                             && (origin === "" || f.mask_origin === origin));
}

function render() {
  const grid = $("grid");
  grid.textContent = "";
  const set = $("set").value;
  const shown = visible();
  for (const f of shown) {
    const cell = document.createElement("div");
    cell.className = "face" + (f.dropped ? " dropped" : "") + (selected.has(f.id) ? " selected" : "")
      + (f.mask_origin === "hand" ? " hand" : f.mask_origin === "learned" ? " learned" : "");
    cell.dataset.id = f.id;
    cell.title = `${f.file}: frame ${f.frame}, face ${f.face}, track ${f.track ?? "-"}, person ${f.person}, `
      + `blur ${f.blur?.toFixed(0)}, yaw ${f.yaw?.toFixed(0)}, pitch ${f.pitch?.toFixed(0)}, mask ${f.mask_origin}`
      + (f.dropped ? `, deleted (${f.drop_reason})` : "");
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.width = 96; img.height = 96;
    img.alt = f.file;
    img.src = `/thumb/${set}/${f.id}.jpg`;
    const label = document.createElement("span");
    label.textContent = `${f.frame}:${f.face}`;
    cell.append(img, label);
    grid.append(cell);
  }
  $("status").textContent = `${shown.length} shown of ${faces.length}, ${selected.size} selected`;
  $("delete").disabled = selected.size === 0;
  $("restore").disabled = selected.size === 0;
}

$("grid").addEventListener("click", (ev) => {
  const cell = ev.target.closest(".face");
  if (!cell) return;
  const id = Number(cell.dataset.id);
  if (ev.shiftKey && anchor !== null) {
    const ids = visible().map((f) => f.id);
    const [a, b] = [ids.indexOf(anchor), ids.indexOf(id)].sort((x, y) => x - y);
    ids.slice(a, b + 1).forEach((i) => selected.add(i));
  } else if (ev.ctrlKey || ev.metaKey) {
    selected.has(id) ? selected.delete(id) : selected.add(id);
    anchor = id;
  } else {
    selected = new Set([id]);
    anchor = id;
  }
  render();
});

async function load() {
  const params = new URLSearchParams({set: $("set").value, sort: $("sort").value});
  if ($("sort").value === "identity") {
    if (anchor === null) { $("status").textContent = "select a face first"; return; }
    params.set("ref", anchor);
  }
  const data = await api(`/api/faces?${params}`);
  faces = data.faces;
  const keep = new Set(faces.map((f) => f.id));
  selected = new Set([...selected].filter((i) => keep.has(i)));
  const persons = $("person"), chosen = persons.value;
  persons.length = 1;
  for (let p = 0; p < data.persons; p++) persons.add(new Option(`person ${p + 1}`, String(p)));
  persons.value = chosen;
  const origins = $("origin"), picked = origins.value;
  origins.length = 1;
  for (const o of [...new Set(faces.map((f) => f.mask_origin))].sort()) origins.add(new Option(o, o));
  origins.value = picked;
  render();
}

async function move(action) {
  const ids = [...selected];
  try {
    const done = await api(`/api/${action}`, {set: $("set").value, ids});
    $("status").textContent = `${action}: ${done.moved} faces`;
  } catch (err) {
    $("status").textContent = `error: ${err.message}`;
  }
  await load();
}

$("delete").addEventListener("click", () => move("delete"));
$("restore").addEventListener("click", () => move("restore"));
for (const id of ["set", "sort"]) $(id).addEventListener("change", () => { selected.clear(); load(); });
for (const id of ["person", "origin", "dropped"]) $(id).addEventListener("change", render);
load().catch((err) => { $("status").textContent = `error: ${err.message}`; });
