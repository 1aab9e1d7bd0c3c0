// The studio page: the face browser, and the router between its views (faces, mask editor,
// convert preview). Thumbnails load lazily (only those scrolled into view); selection by
// click / shift-click / ctrl-click; delete and restore through the studio's API. Above the
// faces, the set's people (as `info` lists them and `convert --person N` swaps them): picking
// one shows only their faces and makes the convert preview swap that person.
"use strict";
const $ = (id) => document.getElementById(id);
let faces = [];
let people = [];
let selected = new Set();
let anchor = null;

function say(text) { $("status").textContent = text; }

// a face list's person is an index into `people` (-1: nobody's); the page names them as info does, from 1
const personName = (f) => (f.person >= 0 ? `person ${f.person + 1}` : "no person");

class ApiError extends Error {
  constructor(data, status) { super(data.error || String(status)); this.data = data; this.status = status; }
}

// The run's token, which the studio writes into this page (no other origin can read it): a change
// needs it in a header, since the cookie alone would also come with another site's request.
const TOKEN = document.querySelector('meta[name="studio-token"]').content;

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                          headers: {"Content-Type": "application/json", "X-Studio-Token": TOKEN}};
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) throw new ApiError(data, res.status);
  return data;
}

function visible() {
  const person = $("person").value, origin = $("origin").value, dropped = $("dropped").checked;
  return faces.filter((f) => (dropped || !f.dropped) && (person === "" || String(f.person) === person)
                             && (origin === "" || f.mask_origin === origin));
}

function render() {
  const grid = $("grid");
  const set = $("set").value;
  const shown = visible();
  const cells = [];
  for (const f of shown) {
    const cell = document.createElement("div");
    cell.className = "face" + (f.dropped ? " dropped" : "") + (selected.has(f.id) ? " selected" : "")
      + (f.mask_origin === "hand" ? " hand" : f.mask_origin === "learned" ? " learned" : "");
    cell.dataset.id = f.id;
    cell.title = `${f.file}: frame ${f.frame}, face ${f.face}, track ${f.track ?? "-"}, ${personName(f)}, `
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
    cells.push(cell);
  }
  grid.replaceChildren(...cells);
  showSelection(shown.length);
}

// selection changes only classes: the cells (and their loaded images) stay
function showSelection(shown = $("grid").children.length) {
  for (const cell of $("grid").children) cell.classList.toggle("selected", selected.has(Number(cell.dataset.id)));
  say(`${shown} shown of ${faces.length}, ${selected.size} selected`);
  $("delete").disabled = selected.size === 0;
  $("restore").disabled = selected.size === 0;
}

function showSide(id) {
  const f = faces.find((x) => x.id === id);
  if (!f) return;
  const set = $("set").value;
  $("side").hidden = false;
  $("source-frame").src = `/frame/${set}/${id}.jpg`;
  $("side-info").textContent = `${f.source} frame ${f.frame}, face ${f.face}; track ${f.track ?? "-"}, `
    + `${personName(f)}; mask ${f.mask_origin}` + (f.dropped ? `; deleted (${f.drop_reason})` : "");
  $("side-preview").hidden = set !== "dst";
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
    showSide(id);
  }
  showSelection();
});

$("grid").addEventListener("dblclick", (ev) => {
  const cell = ev.target.closest(".face");
  if (cell) location.hash = `#/edit/${$("set").value}/${cell.dataset.id}`;
});

// ---------------------------------------------------------------- the row of people
function renderPeople() {
  const set = $("set").value, picked = $("person").value;
  const cells = [];
  if (people.length) {
    const everyone = document.createElement("button");
    everyone.className = "person" + (picked === "" ? " picked" : "");
    everyone.dataset.person = "";
    everyone.setAttribute("role", "radio");
    everyone.setAttribute("aria-checked", String(picked === ""));
    everyone.innerHTML = '<span><span class="who">everyone</span><br><span class="counts"></span></span>';
    everyone.querySelector(".counts").textContent = `${faces.filter((f) => !f.dropped).length} faces`;
    cells.push(everyone);
  }
  people.forEach((p, index) => {
    const cell = document.createElement("button");
    const on = picked === String(index);
    cell.className = "person" + (on ? " picked" : "");
    cell.dataset.person = String(index);
    cell.setAttribute("role", "radio");
    cell.setAttribute("aria-checked", String(on));
    cell.title = `convert --person ${p.person}: ${p.faces} faces in ${p.frames} frames, ${p.first_frame}-${p.last_frame}`;
    const img = document.createElement("img");
    img.width = 56; img.height = 56;
    img.alt = `person ${p.person}`;
    img.src = `/thumb/${set}/${p.face}.jpg`;
    const text = document.createElement("span");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = `person ${p.person}`;
    const counts = document.createElement("span");
    counts.className = "counts";
    counts.textContent = `${p.faces} faces · ${p.frames} frames` + (set === "dst" ? ` (${p.first_frame}-${p.last_frame})` : "");
    text.append(who, document.createElement("br"), counts);
    cell.append(img, text);
    cells.push(cell);
  });
  $("people").replaceChildren(...cells);
}

function pickPerson(value) {
  $("person").value = value;
  renderPeople();
  render();
  if ($("set").value === "dst" && value !== "") Preview.choose(people[Number(value)].person);
}

$("people").addEventListener("click", (ev) => {
  const cell = ev.target.closest(".person");
  if (cell) pickPerson(cell.dataset.person);
});

async function load() {
  const params = new URLSearchParams({set: $("set").value, sort: $("sort").value});
  if ($("sort").value === "identity") {
    if (anchor === null) { say("select a face first"); return; }
    params.set("ref", anchor);
  }
  const [data, found] = await Promise.all([api(`/api/faces?${params}`),
                                          api(`/api/people?set=${encodeURIComponent($("set").value)}`)]);
  faces = data.faces;
  people = found.people;
  const keep = new Set(faces.map((f) => f.id));
  selected = new Set([...selected].filter((i) => keep.has(i)));
  const persons = $("person"), chosen = persons.value;
  persons.length = 1;
  people.forEach((p, index) => persons.add(new Option(`person ${p.person} (${p.faces} faces)`, String(index))));
  persons.value = chosen;
  if (persons.value !== chosen) persons.value = "";      // that person is gone (faces deleted)
  const origins = $("origin"), picked = origins.value;
  origins.length = 1;
  for (const o of [...new Set(faces.map((f) => f.mask_origin))].sort()) origins.add(new Option(o, o));
  origins.value = picked;
  renderPeople();
  render();
}

async function move(action) {
  const ids = [...selected];
  try {
    const done = await api(`/api/${action}`, {set: $("set").value, ids});
    await load();
    say(`${action}: ${done.moved} faces`);
  } catch (err) {
    say(`error: ${err.message}`);
  }
}

$("delete").addEventListener("click", () => move("delete"));
$("restore").addEventListener("click", () => move("restore"));
for (const id of ["set", "sort"]) $(id).addEventListener("change", () => { selected.clear(); load(); });
for (const id of ["origin", "dropped"]) $(id).addEventListener("change", render);
$("person").addEventListener("change", () => pickPerson($("person").value));
$("side-edit").addEventListener("click", () => { if (anchor !== null) location.hash = `#/edit/${$("set").value}/${anchor}`; });
$("side-preview").addEventListener("click", () => {
  const f = faces.find((x) => x.id === anchor);
  // the preview swaps this face's person (convert --person N), whoever is picked in the row
  if (f) location.hash = f.person >= 0 ? `#/preview/${f.frame}/${f.person + 1}` : `#/preview/${f.frame}`;
});

// ---------------------------------------------------------------- the router
let current = "faces";

async function route() {
  const [, view = "faces", ...args] = location.hash.replace(/^#/, "").split("/");
  const leaving = current;
  if (leaving === "editor" && view !== "edit" && !(await Editor.leave())) {
    history.replaceState(null, "", `#/edit/${Editor.where()}`);
    return;
  }
  for (const v of ["faces", "editor", "preview"]) $(`view-${v}`).hidden = true;
  try {
    if (view === "edit" && args.length === 2) {
      current = "editor";
      $("view-editor").hidden = false;
      if ($("set").value !== args[0] || faces.length === 0) { $("set").value = args[0]; await load(); }
      await Editor.open(args[0], Number(args[1]), visible().map((f) => f.id));
    } else if (view === "preview") {
      current = "preview";
      $("view-preview").hidden = false;
      await Preview.open(args.length ? Number(args[0]) : null, args.length > 1 ? args[1] : null);
    } else {
      current = "faces";
      $("view-faces").hidden = false;
      if (leaving !== "faces" || faces.length === 0) await load();
    }
  } catch (err) {
    say(`error: ${err.message}`);
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
