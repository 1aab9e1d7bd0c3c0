// The convert preview: one dst frame rendered by the server with the same code as
// `convert --preview`, with the current model and the options chosen here, beside the original.
// Whom it swaps is `convert --person`: the person picked in the faces view's row, or chosen here.
"use strict";
const Preview = (() => {
  let settings = null;
  let wanted = null;          // a person number (string) asked for before the list of people is here

  // the dst set's people as the select's options: 1..n and all (hidden with one person: nothing to choose)
  async function buildPeople() {
    const found = (await api("/api/people?set=dst")).people;
    const select = $("pv-person"), keep = wanted ?? select.value;
    select.replaceChildren();
    for (const p of found) {
      select.add(new Option(`${p.person}: ${p.faces} faces, frames ${p.first_frame}-${p.last_frame}`, String(p.person)));
    }
    select.add(new Option("all", "all"));
    select.value = keep || "1";
    if (select.value !== (keep || "1")) select.value = found.length ? "1" : "all";
    select.parentElement.hidden = found.length < 2;
    wanted = null;
  }

  function choose(person) {
    wanted = String(person);
    if ([...$("pv-person").options].some((o) => o.value === wanted)) $("pv-person").value = wanted;
  }

  async function build() {
    settings = await api("/api/convert-settings");
    const box = $("pv-settings");
    box.replaceChildren();
    for (const s of settings) {
      const label = document.createElement("label");
      label.title = s.help;
      label.append(`${s.name.replace(/_/g, "-")} `);
      let input;
      if (s.choices) {
        input = document.createElement("select");
        for (const c of s.choices) input.add(new Option(c, c));
      } else {
        input = document.createElement("input");
        input.type = "number";
        if (s.low !== null && s.low !== undefined) input.min = s.low;
        if (s.high !== null && s.high !== undefined) input.max = s.high;
        input.step = Number.isInteger(s.default) ? 1 : 0.1;
        input.className = "num";
      }
      input.value = s.default ?? "";
      if (s.default === null && s.default_text) input.placeholder = s.default_text;
      input.dataset.name = s.name;
      label.append(input);
      box.append(label);
    }
  }

  async function render() {
    const frame = Number($("pv-frame").value);
    const params = new URLSearchParams();
    for (const input of $("pv-settings").querySelectorAll("[data-name]")) {
      if (input.value !== "") params.set(input.dataset.name, input.value);
    }
    if (!$("pv-person").parentElement.hidden) params.set("person", $("pv-person").value);
    say(`rendering frame ${frame}...`);
    const t0 = performance.now();
    const res = await fetch(`/preview/${frame}.jpg?${params}`);
    if (!res.ok) { say(`error: ${(await res.json()).error}`); return; }
    const img = $("pv-image");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await res.blob());
    await img.decode();
    say(`frame ${frame} rendered in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }

  async function open(frame, person = null) {
    if (person !== null) wanted = String(person);
    if (!settings) await build();
    await buildPeople();
    if (frame !== null && !Number.isNaN(frame)) $("pv-frame").value = frame;
    await render();
  }

  $("pv-render").addEventListener("click", render);
  $("pv-person").addEventListener("change", render);
  $("pv-frame").addEventListener("keydown", (ev) => { if (ev.key === "Enter") render(); });
  $("pv-prev").addEventListener("click", () => { $("pv-frame").value = Math.max(0, Number($("pv-frame").value) - 1); render(); });
  $("pv-next").addEventListener("click", () => { $("pv-frame").value = Number($("pv-frame").value) + 1; render(); });
  return {open, choose};
})();
