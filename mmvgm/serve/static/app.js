// mmvgm's page: send a dropped video to /v1/trace or a photo to /v1/protect and show the answer.
// No framework, no build step. Text from the server or the file is only ever set via textContent.
"use strict";

(function () {
  const VIDEO_EXT = ["mp4", "m4v", "mov", "mkv", "webm", "avi", "flv", "gif", "mpg", "mpeg", "vob", "ts",
    "m2ts", "mts", "wmv", "asf", "3gp", "3g2", "ogv", "y4m", "rm", "swf"];
  const IMAGE_EXT = ["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff"];
  const TOKEN_KEY = "mmvgm.token";
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const el = {
    token: $("token"), windows: $("windows"), eps: $("eps"), steps: $("steps"), seed: $("seed"),
    target: $("target"), file: $("file"), drop: $("drop"), busy: $("busy"), busyText: $("busy-text"),
    error: $("error"), results: $("results"), video: $("video-result"), photo: $("photo-result"),
  };
  let busy = false;
  let downloadUrl = null;

  // ------------------------------------------------------------------ token
  try { el.token.value = localStorage.getItem(TOKEN_KEY) || ""; } catch (e) { /* storage disabled */ }
  el.token.addEventListener("input", () => {
    try {
      if (el.token.value) localStorage.setItem(TOKEN_KEY, el.token.value);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the field still works for this page */ }
  });
  $("options").addEventListener("submit", (event) => event.preventDefault());

  // ------------------------------------------------------------------ input
  el.file.addEventListener("change", () => {
    const file = el.file.files && el.file.files[0];
    if (file) handle(file);
    el.file.value = "";  // choosing the same file again fires "change" again
  });
  ["dragenter", "dragover"].forEach((type) => el.drop.addEventListener(type, (event) => {
    event.preventDefault();
    el.drop.classList.add("over");
  }));
  ["dragleave", "dragend"].forEach((type) => el.drop.addEventListener(type, () => el.drop.classList.remove("over")));
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) handle(file);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  function extension(name) {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
  }

  function stem(name) {
    const dot = name.lastIndexOf(".");
    return (dot > 0 ? name.slice(0, dot) : name) || "image";
  }

  /** "video" or "photo": the extension decides (a .gif is a video), then the MIME type; anything
   * else goes to /v1/trace, whose answer says which file types it takes. */
  function kindOf(file) {
    const ext = extension(file.name);
    if (VIDEO_EXT.includes(ext)) return "video";
    if (IMAGE_EXT.includes(ext)) return "photo";
    if ((file.type || "").startsWith("image/")) return "photo";
    return "video";
  }

  async function handle(file) {
    if (busy) return;
    const kind = kindOf(file);
    setBusy(true, (kind === "video" ? "Tracing " : "Protecting ") + file.name + "\u2026");
    showError("");
    try {
      if (kind === "video") await trace(file);
      else await protect(file);
    } catch (exc) {
      showError(exc.message || String(exc));
    } finally {
      setBusy(false);
    }
  }

  // ------------------------------------------------------------------ API
  async function post(url, form) {
    const headers = {};
    const token = el.token.value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    let response;
    try {
      response = await fetch(url, { method: "POST", body: form, headers });
    } catch (exc) {
      throw new Error("the server could not be reached (" + (exc.message || exc) + ")");
    }
    const text = await response.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { /* not JSON: said below */ }
    if (!response.ok) throw new Error(detail(body, response));
    if (body === null) throw new Error("the server answered something other than JSON");
    return body;
  }

  /** The one-line message of an error answer: {"detail": "..."} or FastAPI's list of problems. */
  function detail(body, response) {
    const d = body && body.detail;
    if (typeof d === "string" && d) return d;
    if (Array.isArray(d) && d.length) {
      return d.map((item) => {
        if (!item || typeof item !== "object") return String(item);
        const loc = Array.isArray(item.loc) ? item.loc.filter((part) => part !== "body" && part !== "query") : [];
        return (loc.length ? loc.join(".") + ": " : "") + (item.msg || JSON.stringify(item));
      }).join("; ");
    }
    return "the server answered " + response.status + (response.statusText ? " " + response.statusText : "");
  }

  async function trace(file) {
    const windows = Math.max(1, Math.min(64, parseInt(el.windows.value, 10) || 1));
    const form = new FormData();
    form.append("file", file, file.name);
    const record = await post("/v1/trace?windows=" + windows + "&explain=true", form);
    showTrace(record, file.name);
  }

  async function protect(file) {
    const form = new FormData();
    form.append("image", file, file.name);
    const target = el.target.files && el.target.files[0];
    if (target) form.append("target", target, target.name);
    for (const name of ["eps", "steps", "seed"]) {
      const value = el[name].value.trim();
      if (value) form.append(name, value);
    }
    const answer = await post("/v1/protect?format=json", form);
    showProtect(answer, file.name);
  }

  // ------------------------------------------------------------------ state
  function setBusy(on, text) {
    busy = on;
    el.busy.hidden = !on;
    if (text) el.busyText.textContent = text;
    el.results.setAttribute("aria-busy", on ? "true" : "false");
    el.drop.classList.toggle("disabled", on);
    el.file.disabled = on;
  }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
    if (message) {
      el.video.hidden = true;
      el.photo.hidden = true;
      if (/token/i.test(message)) el.token.focus();
    }
  }

  // ------------------------------------------------------------------ trace
  const pct = (p, digits = 1) => (typeof p === "number" && isFinite(p) ? (100 * p).toFixed(digits) + "%" : "\u2014");

  function showTrace(record, name) {
    el.photo.hidden = true;
    $("video-name").textContent = record.path || name;

    const verdict = $("verdict");
    verdict.textContent = record.verdict || "not-assessed";
    verdict.className = "verdict verdict-" + (record.verdict || "not-assessed").replace(/[^a-z-]/gi, "");

    const pFake = $("p-fake");
    pFake.textContent = typeof record.fake_probability === "number" ? pct(record.fake_probability) : "not assessed";

    const source = record.source || {};
    const best = record.best_source || {};
    let sourceText = source.label || "\u2014";
    if (typeof source.probability === "number") sourceText += " (" + pct(source.probability) + ")";
    else if (source.label === "unknown" && best.label) {
      sourceText += " \u2014 closest: " + best.label + (typeof best.probability === "number"
        ? " (" + pct(best.probability) + ")" : "");
    }
    $("source").textContent = sourceText;

    const meta = [];
    if (record.frames != null) meta.push(record.frames + " frames" + (record.sampling ? ", " + record.sampling : ""));
    if (record.padded) meta.push(record.padded + " padded");
    const windows = Array.isArray(record.windows) ? record.windows : [];
    if (windows.length) {
      meta.push(windows.length + " window" + (windows.length === 1 ? "" : "s") +
        (record.aggregation ? " (" + record.aggregation + ")" : ""));
    }
    if (record.windows_requested) meta.push("only " + windows.length + " of " + record.windows_requested +
      " requested windows fit in this video");
    $("video-meta").textContent = meta.join(" \u00b7 ");

    const warning = $("warning");
    warning.textContent = record.warning || "";
    warning.hidden = !record.warning;

    fillSources(record.sources || {});
    drawWindows(windows);

    const img = $("saliency");
    const figure = $("saliency-figure");
    if (record.explanation_png) {
      img.src = "data:image/png;base64," + record.explanation_png;
      figure.hidden = false;
    } else {
      img.removeAttribute("src");
      figure.hidden = true;
    }
    el.video.hidden = false;
  }

  function fillSources(sources) {
    const body = $("sources").tBodies[0];
    body.replaceChildren();
    const ranked = Object.entries(sources).sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1));
    ranked.forEach(([label, p], i) => {
      const row = body.insertRow();
      if (i === 0) row.className = "top";
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      row.appendChild(th);
      const cell = row.insertCell();
      cell.className = "num";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = (typeof p === "number" ? Math.max(0, Math.min(1, p)) * 100 : 0) + "%";
      bar.setAttribute("aria-hidden", "true");
      const value = document.createElement("span");
      value.textContent = pct(p);
      cell.append(bar, value);
    });
  }

  function svg(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text != null) node.textContent = text;
    return node;
  }

  /** One bar per window: P(fake), or the top source's probability when the checkpoint gives none. */
  function drawWindows(windows) {
    const chart = $("windows-chart");
    const figure = $("windows-figure");
    chart.replaceChildren();
    if (!windows.length) { figure.hidden = true; return; }
    const fake = windows.some((w) => typeof w.fake_probability === "number");
    const value = (w) => {
      if (fake) return w.fake_probability;
      const s = w.source && typeof w.source.probability === "number" ? w.source : w.best_source;
      if (s && typeof s.probability === "number") return s.probability;
      const all = Object.values(w.sources || {}).filter((p) => typeof p === "number");
      return all.length ? Math.max(...all) : null;
    };
    $("windows-caption").textContent = (fake ? "P(fake)" : "Top source probability") +
      " per window, by start frame";

    const W = 320, H = 160, left = 34, right = 6, top = 8, bottom = 22;
    const plotW = W - left - right, plotH = H - top - bottom;
    chart.setAttribute("viewBox", "0 0 " + W + " " + H);
    const y = (p) => top + plotH * (1 - p);
    for (const tick of [0, 0.5, 1]) {
      chart.append(svg("line", { x1: left, x2: W - right, y1: y(tick), y2: y(tick),
        class: tick === 0.5 && fake ? "grid threshold" : "grid" }));
      chart.append(svg("text", { x: left - 4, y: y(tick) + 3, class: "axis", "text-anchor": "end" }, pct(tick, 0)));
    }
    const slot = plotW / windows.length;
    const barW = Math.max(2, Math.min(36, slot * 0.7));
    const every = Math.ceil(windows.length / 16);  // at most ~16 labels
    windows.forEach((w, i) => {
      const p = value(w);
      const cx = left + slot * (i + 0.5);
      const h = typeof p === "number" ? Math.max(0, Math.min(1, p)) * plotH : 0;
      const cls = "mark" + (fake && w.verdict ? " mark-" + String(w.verdict).replace(/[^a-z-]/gi, "") : "");
      const bar = svg("rect", { x: cx - barW / 2, y: top + plotH - h, width: barW, height: Math.max(h, 0.5),
        class: cls });
      const frames = w.start != null ? "frames " + w.start + (w.end != null ? "\u2013" + w.end : "")
        : "window " + (i + 1);
      bar.append(svg("title", {}, frames + ": " + (fake ? "P(fake) " : "") + pct(p) +
        (!fake && w.source && w.source.label ? " (" + w.source.label + ")" : "")));
      chart.append(bar);
      if (i % every === 0) {
        chart.append(svg("text", { x: cx, y: H - 8, class: "axis", "text-anchor": "middle" },
          w.start != null ? w.start : i + 1));
      }
    });
    figure.hidden = false;
  }

  // ------------------------------------------------------------------ protect
  const REPORT_ROWS = [
    ["mode", "Mode"], ["eps", "Budget (L\u221e)"], ["steps", "Steps"], ["schedule", "Schedule"],
    ["seed", "Seed"], ["linf", "L\u221e change"], ["l2", "L2 change"], ["psnr", "PSNR"], ["ssim", "SSIM"],
    ["lpips", "LPIPS"], ["seconds", "Time"], ["target", "Target"],
  ];
  const SKIP = new Set(["path", "step_size", "encoders"]);

  function num(v, digits) {
    return typeof v === "number" ? String(Number(v.toFixed(digits))) : String(v);
  }

  function reportValue(key, v) {
    if (v === null || v === undefined) return key === "lpips" ? "not computed" : "\u2014";
    if (typeof v !== "number") return typeof v === "object" ? JSON.stringify(v) : String(v);
    switch (key) {
      case "eps": case "linf": return num(v * 255, 2) + "/255 (" + num(v, 4) + ")";
      case "psnr": return num(v, 2) + " dB";
      case "ssim": case "lpips": return num(v, 4);
      case "l2": return num(v, 3);
      case "seconds": return num(v, 2) + " s";
      default: return num(v, 6);
    }
  }

  function showProtect(answer, name) {
    el.video.hidden = true;
    const report = answer.report || {};
    $("photo-name").textContent = report.path || name;

    const bytes = Uint8Array.from(atob(answer.png || ""), (c) => c.charCodeAt(0));
    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    downloadUrl = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
    const link = $("download");
    link.href = downloadUrl;
    link.download = stem(name) + ".protected.png";
    link.textContent = "Download " + link.download;
    const preview = $("protected");
    preview.onload = () => {
      $("protected-caption").textContent = preview.naturalWidth + " \u00d7 " + preview.naturalHeight +
        " px, " + bytes.length.toLocaleString("en") + " bytes";
    };
    $("protected-caption").textContent = "";
    preview.src = downloadUrl;

    const body = $("report").tBodies[0];
    body.replaceChildren();
    const addRow = (label, text) => {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      row.appendChild(th);
      row.insertCell().textContent = text;
    };
    const known = new Set(REPORT_ROWS.map(([key]) => key));
    for (const [key, label] of REPORT_ROWS) if (key in report) addRow(label, reportValue(key, report[key]));
    for (const [key, v] of Object.entries(report)) {
      if (!known.has(key) && !SKIP.has(key)) addRow(key, reportValue(key, v));
    }
    for (const [encoder, cos] of Object.entries(report.encoders || {})) {
      const cosine = (v) => (typeof v === "number" ? v.toFixed(4) : "\u2014");
      addRow(encoder + " cosine", cosine(cos && cos.cos_before) + " \u2192 " + cosine(cos && cos.cos_after));
    }
    el.photo.hidden = false;
  }
})();
