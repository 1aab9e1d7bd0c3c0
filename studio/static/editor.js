// The mask editor, in the manner of DeepFaceLab's XSeg editor: include / exclude polygons,
// brush and eraser, undo / redo, zoom, overlay opacity, next / previous by keyboard.
// The mask lives in an offscreen canvas at the face's size (white = face); the view shows
// the aligned face with everything outside the mask tinted. A save names the version of the
// mask it started from: the server refuses it when the file changed meanwhile, and the page
// then shows both masks and lets the artist choose.
"use strict";
const Editor = (() => {
  const view = $("ed-canvas");
  const vctx = view.getContext("2d");
  const mask = document.createElement("canvas");
  const mctx = mask.getContext("2d", {willReadFrequently: true});
  const tint = document.createElement("canvas");
  const tctx = tint.getContext("2d");
  let face = null, set = "dst", order = [], photo = null, prediction = null, showPrediction = false;
  let version = null, dirty = false, tool = "brush", zoom = 2, poly = [], undo = [], redo = [];
  let painting = false, last = null, hover = null, proposals = [];
  const UNDO_DEPTH = 60;

  function size() { return mask.width; }
  function opacity() { return Number($("ed-opacity").value) / 100; }
  function brush() { return Number($("ed-size").value); }

  function setTool(name) {
    tool = name;
    poly = [];
    for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === name);
    draw();
  }

  function setZoom(z) {
    zoom = Math.max(1, Math.min(8, z));
    view.width = view.height = size() * zoom;
    $("ed-zoom-v").textContent = `${zoom}x`;
    draw();
  }

  // ------------------------------------------------------------------ drawing the view
  function draw() {
    if (!photo) return;
    const s = size();
    vctx.setTransform(zoom, 0, 0, zoom, 0, 0);
    vctx.imageSmoothingEnabled = false;
    vctx.drawImage(photo, 0, 0, s, s);
    const m = mctx.getImageData(0, 0, s, s).data;
    const out = tctx.createImageData(s, s);
    const a = opacity() * 255, o = out.data;
    for (let i = 0; i < m.length; i += 4) {        // outside the face: tinted violet
      o[i] = 70; o[i + 1] = 0; o[i + 2] = 120; o[i + 3] = a * (255 - m[i]) / 255;
    }
    tctx.putImageData(out, 0, 0);
    vctx.drawImage(tint, 0, 0);
    drawOutline(m, "rgb(255,210,0)");
    if (showPrediction && prediction) drawOutline(prediction, "rgb(0,230,255)");
    vctx.setTransform(1, 0, 0, 1, 0, 0);
    if (poly.length) {
      vctx.strokeStyle = tool === "include" ? "#3f3" : "#f44";
      vctx.fillStyle = vctx.strokeStyle;
      vctx.lineWidth = 1.5;
      vctx.beginPath();
      poly.forEach(([x, y], i) => (i ? vctx.lineTo(x * zoom, y * zoom) : vctx.moveTo(x * zoom, y * zoom)));
      if (hover) vctx.lineTo(hover[0] * zoom, hover[1] * zoom);
      vctx.stroke();
      for (const [x, y] of poly) vctx.fillRect(x * zoom - 2, y * zoom - 2, 4, 4);
    } else if (hover && (tool === "brush" || tool === "eraser")) {
      vctx.strokeStyle = tool === "brush" ? "#fff" : "#000";
      vctx.beginPath();
      vctx.arc(hover[0] * zoom, hover[1] * zoom, brush() * zoom / 2, 0, 2 * Math.PI);
      vctx.stroke();
    }
  }

  // the boundary of a mask (RGBA data) as single pixels, in mask coordinates
  function drawOutline(data, colour) {
    const s = size();
    vctx.fillStyle = colour;
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const inside = data[(y * s + x) * 4] >= 128;
        if (!inside) continue;
        if (x === 0 || y === 0 || x === s - 1 || y === s - 1
            || data[(y * s + x - 1) * 4] < 128 || data[(y * s + x + 1) * 4] < 128
            || data[((y - 1) * s + x) * 4] < 128 || data[((y + 1) * s + x) * 4] < 128) {
          vctx.fillRect(x, y, 1, 1);
        }
      }
    }
  }

  // ------------------------------------------------------------------ editing
  function remember() {
    undo.push(mctx.getImageData(0, 0, size(), size()));
    if (undo.length > UNDO_DEPTH) undo.shift();
    redo = [];
  }

  function changed() { dirty = true; showState(); draw(); }

  function stepBack(from, to) {
    if (!from.length) return;
    to.push(mctx.getImageData(0, 0, size(), size()));
    mctx.putImageData(from.pop(), 0, 0);
    changed();
  }

  function at(ev) {
    const r = view.getBoundingClientRect();
    return [(ev.clientX - r.left) * size() / r.width, (ev.clientY - r.top) * size() / r.height];
  }

  function stroke(from, to) {
    mctx.strokeStyle = mctx.fillStyle = tool === "brush" ? "#fff" : "#000";
    mctx.lineWidth = brush();
    mctx.lineCap = mctx.lineJoin = "round";
    mctx.beginPath();
    if (from[0] === to[0] && from[1] === to[1]) {
      mctx.arc(to[0], to[1], brush() / 2, 0, 2 * Math.PI);
      mctx.fill();
    } else {
      mctx.moveTo(from[0], from[1]);
      mctx.lineTo(to[0], to[1]);
      mctx.stroke();
    }
  }

  function closePolygon() {
    if (poly.length < 3) return;
    remember();
    mctx.fillStyle = tool === "include" ? "#fff" : "#000";
    mctx.beginPath();
    poly.forEach(([x, y], i) => (i ? mctx.lineTo(x, y) : mctx.moveTo(x, y)));
    mctx.closePath();
    mctx.fill();
    poly = [];
    changed();
  }

  view.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || !photo) return;
    view.focus();
    const p = at(ev);
    if (tool === "brush" || tool === "eraser") {
      remember();
      painting = true;
      last = p;
      view.setPointerCapture(ev.pointerId);
      stroke(p, p);
      changed();
    } else {
      const first = poly[0];
      if (poly.length >= 3 && Math.hypot((first[0] - p[0]) * zoom, (first[1] - p[1]) * zoom) < 8) closePolygon();
      else { poly.push(p); draw(); }
    }
  });
  view.addEventListener("pointermove", (ev) => {
    hover = at(ev);
    if (painting) { stroke(last, hover); last = hover; changed(); } else draw();
  });
  view.addEventListener("pointerup", () => { painting = false; });
  view.addEventListener("pointerleave", () => { hover = null; draw(); });
  view.addEventListener("dblclick", (ev) => { ev.preventDefault(); if (poly.length > 3) { poly.pop(); closePolygon(); } });
  $("stage").addEventListener("wheel", (ev) => {
    if (!ev.ctrlKey && !ev.altKey) return;
    ev.preventDefault();
    setZoom(zoom + (ev.deltaY < 0 ? 1 : -1));
  }, {passive: false});

  // ------------------------------------------------------------------ loading and saving
  function showState() {
    $("ed-face").textContent = `${set} face ${face.id}: frame ${face.frame}, face ${face.face}, `
      + `track ${face.track ?? "-"}; mask ${face.mask_origin}${dirty ? " (changed, not saved)" : ""}`;
    const i = order.indexOf(face.id);
    $("ed-prev").disabled = i <= 0;
    $("ed-next").disabled = i < 0 || i >= order.length - 1;
    $("ed-undo").disabled = !undo.length;
    $("ed-redo").disabled = !redo.length;
    $("ed-save").disabled = !dirty;
    $("ed-predict").disabled = !face.can_predict;
    $("ed-predict").title = face.can_predict ? "show the mask model's prediction as a cyan outline"
      : "no mask model yet: paint a few masks, then run 'python main.py masks train'";
    $("carry-go").disabled = face.track === null || face.later_in_track === 0;
    $("carry-count").max = Math.max(1, face.later_in_track);
    $("ed-preview").hidden = set !== "dst";
  }

  async function image(url) {
    const res = await fetch(url);
    if (!res.ok) throw new ApiError(await res.json(), res.status);
    const bitmap = await createImageBitmap(await res.blob(), {colorSpaceConversion: "none", premultiplyAlpha: "none"});
    return {bitmap, version: res.headers.get("X-Mask-Version")};
  }

  function putMask(bitmap) {
    mctx.globalCompositeOperation = "copy";
    mctx.drawImage(bitmap, 0, 0);
    mctx.globalCompositeOperation = "source-over";
  }

  async function open(setName, id, ids) {
    set = setName;
    order = ids.includes(id) ? ids : [id];
    face = await api(`/api/face?set=${set}&id=${id}`);
    const [pic, m] = await Promise.all([image(`/aligned/${set}/${id}`), image(`/mask/${set}/${id}.png`)]);
    photo = pic.bitmap;
    mask.width = mask.height = tint.width = tint.height = face.size;
    putMask(m.bitmap);
    version = m.version;
    dirty = false; undo = []; redo = []; poly = []; prediction = null; showPrediction = false;
    $("ed-use-predict").disabled = true;
    $("ed-predict").textContent = "Show prediction";
    $("conflict").hidden = true;
    $("carry").hidden = true;
    $("ed-frame-img").hidden = true;
    setZoom(Math.max(1, Math.min(8, Math.floor(Math.min(window.innerHeight - 160, 1024) / face.size)) || 1));
    showState();
    say(`editing ${set} face ${id}`);
    view.focus();
    if (face.can_predict) await togglePrediction();     // a mask model exists: show what it thinks
  }

  function maskPng() { return mask.toDataURL("image/png"); }

  async function save(force = false, base = version) {
    try {
      const done = await api("/api/mask", {set, id: face.id, base, png: maskPng(), force});
      version = done.versions[String(face.id)];
      dirty = false;
      face.mask_origin = "hand";
      $("conflict").hidden = true;
      const f = faces.find((x) => x.id === face.id);
      if (f) f.mask_origin = "hand";
      showState();
      say(`saved face ${face.id}: its mask is hand-made now` + (done.recorded ? "" : " (recorded by the next command)"));
      return true;
    } catch (err) {
      if (err.status === 409) showConflict(err.data);
      else say(`error: ${err.message}`);
      return false;
    }
  }

  let theirs = null;
  function showConflict(data) {
    theirs = data;
    $("conflict").hidden = false;
    $("conflict-text").textContent = data.error;
    $("conflict-theirs").src = data.theirs;
    $("conflict-mine").src = maskPng();
    say(`not saved: face ${face.id} was changed elsewhere`);
  }

  $("conflict-theirs-keep").addEventListener("click", async () => {
    const m = await image(`/mask/${set}/${face.id}.png`);
    remember();
    putMask(m.bitmap);
    version = m.version;
    dirty = false;
    $("conflict").hidden = true;
    showState(); draw();
    say(`face ${face.id}: kept the mask saved elsewhere`);
  });
  $("conflict-mine-save").addEventListener("click", () => save(false, theirs.current));

  async function leave() {
    if (!face || !dirty) return true;
    return save();
  }

  async function go(step) {
    const i = order.indexOf(face.id) + step;
    if (i < 0 || i >= order.length) return;
    if (!(await leave())) return;
    location.hash = `#/edit/${set}/${order[i]}`;
  }

  // ------------------------------------------------------------------ prediction and carry forward
  async function togglePrediction() {
    try {
      if (!prediction) {
        const id = face.id;
        say("predicting...");
        const p = await image(`/api/predict?set=${set}&id=${id}`);
        if (!face || face.id !== id) return;           // the artist moved on meanwhile
        const c = document.createElement("canvas");
        c.width = c.height = size();
        c.getContext("2d").drawImage(p.bitmap, 0, 0, size(), size());
        prediction = c.getContext("2d").getImageData(0, 0, size(), size()).data;
        say("the mask model's prediction: cyan outline (Use prediction takes it)");
      }
      showPrediction = !showPrediction;
      $("ed-predict").textContent = showPrediction ? "Hide prediction" : "Show prediction";
      $("ed-use-predict").disabled = false;
      draw();
    } catch (err) { say(`error: ${err.message}`); }
  }
  $("ed-predict").addEventListener("click", togglePrediction);
  $("ed-use-predict").addEventListener("click", () => {
    if (!prediction) return;
    remember();
    mctx.putImageData(new ImageData(new Uint8ClampedArray(prediction), size(), size()), 0, 0);
    changed();
    say("the prediction is the mask now (not saved; Undo goes back)");
  });

  $("carry-go").addEventListener("click", async () => {
    if (dirty && !(await save())) return;
    try {
      say("carrying forward...");
      const count = Number($("carry-count").value);
      const anchor = $("carry-anchor").value;
      const data = await api("/api/carry", {set, id: face.id, count, flow: $("carry-flow").checked, anchor,
                                            png: maskPng()});
      proposals = data.proposals;
      const list = $("carry-list");
      list.replaceChildren();
      for (const p of proposals) {
        const item = document.createElement("label");
        item.className = "proposal";
        const tick = document.createElement("input");
        tick.type = "checkbox";
        tick.checked = p.mask_origin !== "hand";
        tick.dataset.id = p.id;
        const pic = document.createElement("canvas");
        pic.width = pic.height = 96;
        overlayThumb(pic, p);
        const text = document.createElement("span");
        text.textContent = `frame ${p.frame}` + (p.mask_origin === "hand" ? " (hand-made: unticked)" : "");
        item.append(tick, pic, text);
        list.append(item);
      }
      $("carry-text").textContent = `this mask moved onto the next ${proposals.length} faces of track ${face.track}, `
        + `following ${anchor === "frame" ? "the frame" : "the face"}`
        + ($("carry-flow").checked ? ", refined by optical flow" : "") + ". Nothing is saved until you accept.";
      $("carry").hidden = false;
      say(`${proposals.length} proposals`);
    } catch (err) { say(`error: ${err.message}`); }
  });

  async function overlayThumb(canvas, p) {
    const ctx = canvas.getContext("2d");
    const [face_, m] = await Promise.all([loadImg(`/thumb/${set}/${p.id}.jpg`), loadImg(p.png)]);
    ctx.drawImage(face_, 0, 0, 96, 96);
    const c = document.createElement("canvas");
    c.width = c.height = 96;
    const cc = c.getContext("2d");
    cc.drawImage(m, 0, 0, 96, 96);
    const d = cc.getImageData(0, 0, 96, 96);
    for (let i = 0; i < d.data.length; i += 4) {
      const out = 255 - d.data[i];
      d.data[i] = 70; d.data[i + 1] = 0; d.data[i + 2] = 120; d.data[i + 3] = out * 0.6;
    }
    cc.putImageData(d, 0, 0);
    ctx.drawImage(c, 0, 0);
  }

  function loadImg(src) {
    return new Promise((resolve, reject) => {
      const im = new Image();
      im.onload = () => resolve(im);
      im.onerror = reject;
      im.src = src;
    });
  }

  $("carry-accept").addEventListener("click", async () => {
    const ticked = new Set([...document.querySelectorAll("#carry-list input:checked")].map((t) => Number(t.dataset.id)));
    const items = proposals.filter((p) => ticked.has(p.id)).map((p) => ({id: p.id, base: p.version, png: p.png}));
    if (!items.length) { say("nothing ticked"); return; }
    try {
      const done = await api("/api/accept", {set, items});
      $("carry").hidden = true;
      for (const f of faces) if (ticked.has(f.id)) f.mask_origin = "hand";
      say(`carried forward: ${done.saved} masks saved as hand-made`);
    } catch (err) {
      say(`not saved: ${err.message}` + (err.status === 409 ? " (carry forward again to see it)" : ""));
    }
  });
  $("carry-discard").addEventListener("click", () => { $("carry").hidden = true; proposals = []; say("discarded"); });

  // ------------------------------------------------------------------ buttons and keys
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("ed-size").addEventListener("input", () => { $("ed-size-v").textContent = brush(); draw(); });
  $("ed-opacity").addEventListener("input", draw);
  $("ed-zoom-in").addEventListener("click", () => setZoom(zoom + 1));
  $("ed-zoom-out").addEventListener("click", () => setZoom(zoom - 1));
  $("ed-undo").addEventListener("click", () => stepBack(undo, redo));
  $("ed-redo").addEventListener("click", () => stepBack(redo, undo));
  $("ed-save").addEventListener("click", () => save());
  $("ed-prev").addEventListener("click", () => go(-1));
  $("ed-next").addEventListener("click", () => go(1));
  $("ed-back").addEventListener("click", () => { location.hash = "#/faces"; });
  $("ed-frame").addEventListener("click", () => {
    const img = $("ed-frame-img");
    img.hidden = !img.hidden;
    if (!img.hidden) img.src = `/frame/${set}/${face.id}.jpg`;
  });
  $("ed-preview").addEventListener("click", () => { location.hash = `#/preview/${face.frame}`; });

  document.addEventListener("keydown", (ev) => {
    if ($("view-editor").hidden || ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    const key = ev.key.toLowerCase(), ctrl = ev.ctrlKey || ev.metaKey;
    const act = {
      b: () => setTool("brush"), e: () => setTool("eraser"), i: () => setTool("include"), x: () => setTool("exclude"),
      "[": () => { $("ed-size").value = brush() - 2; $("ed-size-v").textContent = brush(); draw(); },
      "]": () => { $("ed-size").value = brush() + 2; $("ed-size-v").textContent = brush(); draw(); },
      "+": () => setZoom(zoom + 1), "=": () => setZoom(zoom + 1), "-": () => setZoom(zoom - 1),
      enter: closePolygon, backspace: () => { poly.pop(); draw(); },
      escape: () => { if (poly.length) { poly = []; draw(); } else location.hash = "#/faces"; },
      arrowright: () => go(1), n: () => go(1), arrowleft: () => go(-1), p: () => go(-1), s: () => save(),
    };
    let fn = act[key];
    if (ctrl && key === "z") fn = ev.shiftKey ? () => stepBack(redo, undo) : () => stepBack(undo, redo);
    else if (ctrl && key === "y") fn = () => stepBack(redo, undo);
    else if (ctrl && key === "s") fn = () => save();
    else if (ctrl) fn = null;
    if (fn) { ev.preventDefault(); fn(); }
  });
  window.addEventListener("beforeunload", (ev) => { if (dirty) { ev.preventDefault(); ev.returnValue = ""; } });

  setTool("brush");
  return {open, leave, where: () => (face ? `${set}/${face.id}` : "")};
})();
