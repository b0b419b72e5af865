// The inspection page: models, image test with a client-side threshold slider, batch table, video jobs.
// Plain browser JavaScript (no build step, nothing fetched from elsewhere); the API is service/CONTRACT.md.
"use strict";

const TOKEN_KEY = "glassServiceToken";
const POLL_MS = 400;
const POLL_RETRIES = 5;  // consecutive network failures tolerated while polling a job
const FIRST_METRICS = ["image_auroc", "pixel_auroc"];
const NUMERIC_KEYS = new Set(["score", "margin", "regions"]);

const state = {
  authRequired: false,
  current: null,       // model_id the tests use (the last one loaded here, else the first loaded one)
  image: null,         // {score, threshold, serverThreshold, serverDecision, original, map: {width, height, values}}
  threshold: null,     // the slider's threshold (exact server value until the slider moves)
  batchRows: [],
  sort: {key: null, ascending: true},
  job: null,           // id of the video job being polled
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// ------------------------------------------------------------------ messages, token, requests

function oneLine(text) {
  return String(text).replace(/\s+/g, " ").trim();
}

function showError(message) {
  const box = $("error");
  box.textContent = oneLine(message);
  box.hidden = false;
}

function clearError() {
  const box = $("error");
  box.textContent = "";
  box.hidden = true;
}

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

function authHeaders() {
  const value = token();
  return value ? {Authorization: `Bearer ${value}`} : {};
}

function askToken() {
  $("token-form").hidden = false;
  $("token-input").focus();
}

function errorDetail(body, text, statusText) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {  // FastAPI validation errors
    return body.detail.map((item) => `${(item.loc || []).slice(-1)[0] || "field"}: ${item.msg}`).join("; ");
  }
  return (text || "").slice(0, 200) || statusText || "request failed";
}

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: {...authHeaders(), ...(options.headers || {})}});
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) {
      localStorage.removeItem(TOKEN_KEY);  // missing or wrong: ask again
      askToken();
    }
    throw new ApiError(response.status, errorDetail(body, text, response.statusText));
  }
  return body;
}

async function guarded(action) {
  clearError();
  try {
    await action();
  } catch (err) {
    showError(err instanceof ApiError ? `${err.status}: ${err.message}` : `error: ${err.message}`);
  }
}

function fmt(value, digits = 4) {
  return value === null || value === undefined || Number.isNaN(Number(value)) ? "–" : Number(value).toFixed(digits);
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

// ------------------------------------------------------------------ status and models

async function loadStatus() {
  const status = await api("/api/status");
  state.authRequired = Boolean(status.auth_required);
  $("service-status").textContent =
    `v${status.version} · ${status.device} · ${status.backend} · uploads up to ${status.max_upload_mb} MB`;
  const loaded = status.loaded_models || [];
  if (state.current === null || !loaded.includes(state.current)) state.current = loaded.length ? loaded[0] : null;
  if (state.authRequired && !token()) {
    askToken();
    return false;
  }
  return true;
}

function metricKeys(models) {
  const keys = new Set();
  models.forEach((model) => Object.keys(model.metrics || {}).forEach((key) => keys.add(key)));
  const rest = [...keys].filter((key) => !FIRST_METRICS.includes(key)).sort();
  return [...FIRST_METRICS.filter((key) => keys.has(key)), ...rest];
}

function renderModels(models) {
  const metrics = metricKeys(models);
  const head = $("models-head");
  head.textContent = "";
  const headRow = head.insertRow();
  ["", "model", "method", "class", "backbone", "size", "image thr.", "pixel thr.", ...metrics, ""].forEach((name) => {
    const th = document.createElement("th");
    th.textContent = name.replace(/_/g, " ");
    headRow.appendChild(th);
  });
  const body = $("models-body");
  body.textContent = "";
  models.forEach((model, index) => {
    const row = body.insertRow();
    row.id = `model-row-${index}`;
    row.dataset.modelId = model.model_id;
    row.classList.toggle("loaded", Boolean(model.loaded));
    row.classList.toggle("current", model.model_id === state.current);
    const mark = cell(row, model.model_id === state.current ? "in use" : model.loaded ? "loaded" : "", "mark");
    if (model.error) {  // a checkpoint the service could not read
      mark.textContent = "unreadable";
      mark.title = model.error;
      row.classList.add("unreadable");
    }
    cell(row, model.model_id, "model-id");
    cell(row, model.method);
    cell(row, model.class_name);
    cell(row, model.backbone);
    cell(row, model.imagesize);
    cell(row, fmt(model.image_threshold));
    cell(row, fmt(model.pixel_threshold));
    metrics.forEach((key) => cell(row, fmt((model.metrics || {})[key], 3)));
    const button = document.createElement("button");
    button.type = "button";
    button.id = `load-${index}`;
    button.className = "load-button";
    button.dataset.modelId = model.model_id;
    button.textContent = model.loaded ? "Use" : "Load";
    button.addEventListener("click", () => guarded(() => loadModel(model.model_id, button)));
    row.insertCell().appendChild(button);
  });
  $("current-model").textContent = state.current || "none (load one below)";
}

async function loadModels() {
  const answer = await api("/api/models");
  renderModels(answer.models || []);
}

async function loadModel(modelId, button) {
  button.disabled = true;
  button.textContent = "Loading...";
  try {
    const entry = await api("/api/load_model", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({model_id: modelId}),
    });
    state.current = entry.model_id;
  } finally {
    await loadModels();  // redraws the buttons
  }
}

async function refresh() {
  if (await loadStatus()) await loadModels();
}

// ------------------------------------------------------------------ shared form fields

function measuringFields(form, withThreshold) {
  if (state.current) form.append("model_id", state.current);
  const pixelSize = $("pixel-size").value.trim();
  if (pixelSize) form.append("pixel_size", pixelSize);
  const unit = $("unit").value.trim();
  if (unit) form.append("unit", unit);
  if (withThreshold && $("use-slider").checked && state.threshold !== null) {
    form.append("threshold", String(state.threshold));
  }
}

// ------------------------------------------------------------------ image test and the client-side threshold

function decodeImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser could not decode an image the server sent"));
    image.src = src;
  });
}

async function readMap(mapPng) {
  const image = await decodeImage(`data:image/png;base64,${mapPng}`);
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(image, 0, 0);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const values = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < values.length; i++) values[i] = rgba[4 * i];  // gray: R = G = B
  return {width: canvas.width, height: canvas.height, values};
}

// Connected regions (8-neighbours) of the map's pixels >= threshold * 255: {mask, boxes}.
function cutRegions(map, threshold) {
  const {width, height, values} = map;
  const level = threshold * 255;
  const mask = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) mask[i] = values[i] >= level ? 1 : 0;
  const seen = new Uint8Array(values.length);
  const stack = new Int32Array(values.length);
  const boxes = [];
  for (let start = 0; start < values.length; start++) {
    if (!mask[start] || seen[start]) continue;
    let top = 0;
    stack[top++] = start;
    seen[start] = 1;
    let x0 = width, y0 = height, x1 = -1, y1 = -1, area = 0;
    while (top > 0) {
      const index = stack[--top];
      const x = index % width, y = (index - x) / width;
      area++;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
          const next = ny * width + nx;
          if (mask[next] && !seen[next]) {
            seen[next] = 1;
            stack[top++] = next;
          }
        }
      }
    }
    boxes.push({x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1, area});
  }
  return {mask, boxes};
}

function drawRegions() {
  const result = state.image;
  const canvas = $("regions-canvas");
  const {map, original} = result;
  canvas.width = map.width;
  canvas.height = map.height;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(original, 0, 0, map.width, map.height);
  const {mask, boxes} = cutRegions(map, state.threshold);
  const pixels = context.getImageData(0, 0, map.width, map.height);
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;  // tint the region pixels red
    pixels.data[4 * i] = Math.round(0.55 * pixels.data[4 * i] + 0.45 * 255);
    pixels.data[4 * i + 1] = Math.round(0.55 * pixels.data[4 * i + 1]);
    pixels.data[4 * i + 2] = Math.round(0.55 * pixels.data[4 * i + 2]);
  }
  context.putImageData(pixels, 0, 0);
  context.strokeStyle = "#ffd400";
  context.lineWidth = Math.max(1, Math.round(map.width / 256));
  boxes.forEach((box) => context.strokeRect(box.x + 0.5, box.y + 0.5, box.w - 1, box.h - 1));
  $("region-count").textContent = String(boxes.length);
  canvas.dataset.regions = String(boxes.length);
}

function redecide() {
  const result = state.image;
  if (!result) return;
  const defect = result.score >= state.threshold;
  const decision = $("decision");
  decision.textContent = defect ? "DEFECT" : "GOOD";
  decision.dataset.decision = defect ? "defect" : "good";
  decision.classList.toggle("defect", defect);
  decision.classList.toggle("good", !defect);
  $("threshold").textContent = fmt(state.threshold);
  $("margin").textContent = `${result.score - state.threshold >= 0 ? "+" : ""}${fmt(result.score - state.threshold)}`;
  $("slider-value").textContent = fmt(state.threshold, 3);
  drawRegions();
}

function renderServerRegions(regions) {
  $("regions-table").hidden = !regions.length;
  const body = $("regions-body");
  body.textContent = "";
  regions.forEach((region) => {
    const row = body.insertRow();
    cell(row, region.id);
    cell(row, region.x);
    cell(row, region.y);
    cell(row, region.w);
    cell(row, region.h);
    cell(row, `${fmt(region.area, 2)} ${region.unit}²`);
    cell(row, `${fmt(region.length, 2)} ${region.unit}`);
    cell(row, `${fmt(region.width, 2)} ${region.unit}`);
    cell(row, region.severity);
    cell(row, fmt(region.max_score));
  });
}

async function testImage(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  measuringFields(form, false);  // the slider re-decides here: the calibrated threshold comes back
  const zone = $("drop-zone");
  zone.classList.add("busy");
  let result;
  try {
    result = await api("/api/test_image", {method: "POST", body: form});
  } finally {
    zone.classList.remove("busy");
  }
  const [original, map] = await Promise.all([decodeImage(`data:image/png;base64,${result.original_png}`),
    readMap(result.map_png)]);
  $("original-image").src = original.src;
  $("overlay-image").src = `data:image/png;base64,${result.overlay_png}`;
  state.image = {score: result.score, serverThreshold: result.threshold, serverDecision: result.decision, original, map};
  state.threshold = result.threshold;
  $("threshold-slider").value = String(result.threshold);
  $("image-file").textContent = `${result.file} (${result.width}x${result.height})`;
  $("score").textContent = fmt(result.score);
  $("server-threshold").textContent = `${fmt(result.threshold)} (server: ${result.decision}, ` +
    `${result.regions.length} region(s) at pixel threshold ${fmt(result.pixel_threshold)})`;
  renderServerRegions(result.regions);
  $("image-result").hidden = false;
  redecide();
}

// ------------------------------------------------------------------ batch test

function compareRows(key, ascending) {
  return (a, b) => {
    const x = a[key], y = b[key];
    if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;  // empty cells last
    if (y === null || y === undefined) return -1;
    const order = NUMERIC_KEYS.has(key) ? Number(x) - Number(y) : String(x).localeCompare(String(y));
    return ascending ? order : -order;
  };
}

function renderBatch() {
  const {key, ascending} = state.sort;
  const rows = key ? [...state.batchRows].sort(compareRows(key, ascending)) : state.batchRows;
  const body = $("batch-body");
  body.textContent = "";
  rows.forEach((result) => {
    const row = body.insertRow();
    row.classList.toggle("defect", result.decision === "defect");
    row.classList.toggle("failed", Boolean(result.error));
    cell(row, result.file, "col-file");
    cell(row, fmt(result.score), "col-score");
    cell(row, result.decision || "–", "col-decision");
    cell(row, fmt(result.margin), "col-margin");
    cell(row, result.regions === null || result.regions === undefined ? "–" : result.regions, "col-regions");
    cell(row, result.error || "", "col-error");
  });
  document.querySelectorAll("#batch-table th").forEach((th) => {
    const sorted = th.dataset.key === key;
    th.classList.toggle("sorted-asc", sorted && ascending);
    th.classList.toggle("sorted-desc", sorted && !ascending);
    th.setAttribute("aria-sort", sorted ? (ascending ? "ascending" : "descending") : "none");
  });
  $("batch-table").hidden = false;
}

async function testBatch(files) {
  const form = new FormData();
  [...files].forEach((file) => form.append("files", file, file.name));
  measuringFields(form, true);
  $("batch-summary").textContent = `scoring ${files.length} file(s)...`;
  const answer = await api("/api/batch_test", {method: "POST", body: form});
  state.batchRows = answer.results || [];
  state.sort = {key: null, ascending: true};
  const defects = state.batchRows.filter((row) => row.decision === "defect").length;
  const failed = state.batchRows.filter((row) => row.error).length;
  $("batch-summary").textContent = `${state.batchRows.length} result(s) with ${answer.model_id} at threshold ` +
    `${fmt(answer.threshold)}: ${defects} defect, ${failed} unreadable`;
  renderBatch();
}

function sortBatch(key) {
  const ascending = state.sort.key === key ? !state.sort.ascending : true;
  state.sort = {key, ascending};
  renderBatch();
}

// ------------------------------------------------------------------ video jobs

async function fileUrl(url) {
  if (!token()) return url;  // no token: the browser fetches it directly
  const response = await fetch(url, {headers: authHeaders()});
  if (!response.ok) throw new ApiError(response.status, `could not fetch ${url}`);
  return URL.createObjectURL(await response.blob());
}

function setDownload(link, url) {
  link.href = url || "#";
  link.hidden = !url;
  link.onclick = async (event) => {
    if (!token() || !url) return;  // a plain link works without a token
    event.preventDefault();
    await guarded(async () => {
      const anchor = document.createElement("a");
      anchor.href = await fileUrl(url);
      anchor.download = url.split("/").pop();
      anchor.click();
    });
  };
}

function renderReport(report) {
  const summary = $("report-summary");
  summary.textContent = "";
  if (!report) return;
  const totals = report.totals || {};
  const performance = report.performance || {};
  const items = [
    ["defects", totals.num_defects],
    ["tracks", totals.num_tracks],
    ["frames", totals.total_frames],
    ["frames flagged", totals.defect_frames],
    ["largest area", totals.largest_area_physical === undefined ? undefined
      : `${fmt(totals.largest_area_physical, 2)} ${totals.area_unit || ""}`],
    ["surface speed", totals.mean_speed_per_second === undefined ? undefined
      : `${fmt(totals.mean_speed_per_second, 2)} ${totals.speed_unit || ""}`],
    ["processing", performance.measured_fps === undefined ? undefined : `${fmt(performance.measured_fps, 1)} fps`],
  ];
  items.filter(([, value]) => value !== undefined && value !== null).forEach(([name, value]) => {
    const term = document.createElement("dt");
    term.textContent = name;
    const detail = document.createElement("dd");
    detail.textContent = String(value);
    detail.id = `report-${name.replace(/ /g, "-")}`;
    summary.append(term, detail);
  });
}

async function renderGallery(defects) {
  const gallery = $("gallery");
  gallery.textContent = "";
  if (!defects.length) {
    gallery.textContent = "no defect found";
    return;
  }
  for (const defect of defects) {
    const figure = document.createElement("figure");
    figure.className = "defect";
    figure.dataset.defectId = String(defect.defect_id);
    if (defect.frame_url) {
      const image = document.createElement("img");
      image.alt = `defect ${defect.defect_id}`;
      image.src = await fileUrl(defect.frame_url);
      figure.appendChild(image);
    }
    const caption = document.createElement("figcaption");
    const area = defect.area_physical === undefined ? "" : `, ${fmt(defect.area_physical, 2)} ${defect.physical_unit || ""}²`;
    const frames = defect.first_frame === undefined ? "" : `, frames ${defect.first_frame}-${defect.last_frame}`;
    caption.textContent = `#${defect.defect_id}${frames}${area}${defect.severity ? `, ${defect.severity}` : ""}`;
    figure.appendChild(caption);
    gallery.appendChild(figure);
  }
}

async function showJob(job) {
  $("video-progress").value = job.progress || 0;
  $("video-state").textContent = `${job.state} ${job.frames_done}/${job.frames_total || "?"} frames`;
  $("video-state").dataset.state = job.state;
  if (job.state === "failed") {
    showError(`video job failed: ${job.error || "no reason given"}`);
    return true;
  }
  if (job.state !== "done") return false;
  setDownload($("video-link"), job.video_url);
  setDownload($("report-link"), job.report_url);
  renderReport(job.report);
  await renderGallery(job.defects || []);
  $("video-result").hidden = false;
  return true;
}

async function pollJob(jobId) {
  let failures = 0;
  while (state.job === jobId) {
    try {
      const job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
      failures = 0;
      if (await showJob(job)) return;
    } catch (err) {
      if (err instanceof ApiError || ++failures > POLL_RETRIES) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function submitVideo(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  measuringFields(form, true);
  const maxFrames = $("max-frames").value.trim();
  if (maxFrames) form.append("max_frames", maxFrames);
  $("video-result").hidden = true;
  $("video-job").hidden = false;
  $("video-progress").value = 0;
  $("video-state").textContent = "uploading...";
  $("video-state").dataset.state = "uploading";
  const answer = await api("/api/video", {method: "POST", body: form});
  state.job = answer.job_id;
  $("video-job").dataset.jobId = answer.job_id;
  await pollJob(answer.job_id);
}

// ------------------------------------------------------------------ wiring

function dropTarget(zoneId, inputId, handle) {
  const zone = $(zoneId);
  const input = $(inputId);
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer.files.length) guarded(() => handle(event.dataTransfer.files));
  });
  input.addEventListener("change", () => {
    if (input.files.length) guarded(() => handle(input.files)).finally(() => { input.value = ""; });
  });
}

function start() {
  dropTarget("drop-zone", "image-input", (files) => testImage(files[0]));
  dropTarget("batch-drop", "batch-input", testBatch);
  dropTarget("video-drop", "video-input", (files) => submitVideo(files[0]));
  $("threshold-slider").addEventListener("input", (event) => {
    state.threshold = Number(event.target.value);
    redecide();
  });
  $("slider-reset").addEventListener("click", () => {
    if (!state.image) return;
    state.threshold = state.image.serverThreshold;
    $("threshold-slider").value = String(state.threshold);
    redecide();
  });
  document.querySelectorAll("#batch-table th").forEach((th) => {
    th.addEventListener("click", () => sortBatch(th.dataset.key));
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    localStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    guarded(refresh);
  });
  guarded(refresh);
}

document.addEventListener("DOMContentLoaded", start);
