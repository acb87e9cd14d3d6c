// Loads the export (export.json, model.onnx, tokenizer.json, entities.json where the run has
// entities) with ONNX Runtime Web and classifies the message as it is typed: the intent and the
// entities, marked in the message. window.intentkit exposes the same for scripts and tests:
// `await intentkit.ready`, `await intentkit.classify(text)`, `intentkit.stats`.
"use strict";

const show = (id, text) => { document.getElementById(id).textContent = text; };

async function fetchOk(name, kind) {
  const response = await fetch(name);
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
  return kind === "json" ? response.json() : response.arrayBuffer();
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// A file that is not the one described would answer wrongly (other labels, other weights).
async function fetchDescribed(described) {
  const bytes = await fetchOk(described.file);
  if (bytes.byteLength !== described.bytes || (await sha256Hex(bytes)) !== described.sha256) {
    throw new Error(`${described.file} does not match export.json (${bytes.byteLength} bytes, ` +
                    `expected ${described.bytes} with sha256 ` +
                    `${described.sha256.slice(0, 12)}…): export the model again`);
  }
  return bytes;
}

async function load() {
  const started = performance.now();
  const description = await fetchOk("export.json", "json");
  const model = description.model;
  const bytes = await fetchDescribed(model);
  // An export.json without `entities` (written before they were exported) holds none.
  const entityPart = description.entities || { exported: false, why: "" };
  const extractor = entityPart.exported ? new PortableEntities(JSON.parse(
    new TextDecoder().decode(await fetchDescribed(entityPart)))) : null;
  const tokenizer = new WordPiece(await fetchOk(description.tokenizer.file, "json"));
  ort.env.wasm.wasmPaths = "./";
  ort.env.wasm.numThreads = 1;  // threads need a cross-origin isolated page
  const session = await ort.InferenceSession.create(new Uint8Array(bytes),
                                                    { executionProviders: ["wasm"] });
  const expectedInputs = description.inputs.map((i) => i.name).join(",");
  if (session.inputNames.join(",") !== expectedInputs ||
      session.outputNames[0] !== description.outputs[0].name) {
    throw new Error(`${model.file}: inputs/outputs ${session.inputNames}/${session.outputNames}` +
                    ` are not export.json's`);
  }
  const labels = description.labels;
  const fallback = description.fallback;
  const modelType = description.answer.model_type;  // "ensemble" or "single", as Python's

  async function probabilities(text) {
    const ids = tokenizer.encode(text);
    const shape = [1, ids.length];
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), shape),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(ids.length).fill(1n), shape),
    };
    const output = (await session.run(feeds))[description.outputs[0].name];
    if (output.data.length !== labels.length) {
      throw new Error(`${model.file} gives ${output.data.length} scores for ` +
                      `${labels.length} labels`);
    }
    return Array.from(output.data);
  }

  // The model's answer; an intent rule of the run that matches the message overrides it
  // (confidence 1, never the fallback, model_type "rule"), as the Python Predictor does.
  async function classify(text, topK = 3) {
    const entities = extractor ? extractor.extract(text) : [];
    const rule = extractor ? extractor.rule(text) : null;
    const ruled = (answer) => (rule === null ? { ...answer, model_type: modelType } :
      { ...answer, intent: rule, confidence: 1, fallback: false, model_type: "rule" });
    if (!/[\p{L}\p{N}]/u.test(text.normalize("NFKC"))) {
      return ruled({ intent: fallback.intent, confidence: 0, fallback: true, top_k: [],
                     entities });
    }
    const scores = await probabilities(text);
    const ranked = scores.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    const [best, runnerUp] = [ranked[0][0], ranked.length > 1 ? ranked[1][0] : 0];
    const isFallback = best < fallback.threshold || best - runnerUp < fallback.margin;
    return ruled({
      intent: isFallback ? fallback.intent : labels[ranked[0][1]],
      confidence: best,
      fallback: isFallback,
      top_k: ranked.slice(0, topK).map(([p, i]) => ({ intent: labels[i], confidence: p })),
      probabilities: scores,
      entities,
    });
  }

  await classify("hello");  // the first run compiles kernels: not the user's first keystroke
  const loadMs = performance.now() - started;
  return { classify, entities: entityPart, stats: { loadMs, modelBytes: bytes.byteLength,
                                                    precision: model.precision } };
}

// The message with its entities marked, as the service's page marks them (static/index.html):
// offsets count code points, which Array.from splits the text into.
function showEntities(text, entities) {
  const line = document.getElementById("entities");
  line.replaceChildren();
  if (!entities.length) return;
  const chars = Array.from(text);
  let at = 0;
  for (const entity of entities) {
    const written = chars.slice(entity.start, entity.end).join("");
    const mark = document.createElement("mark");
    mark.className = "entity";
    mark.dataset.entity = entity.entity;
    mark.dataset.value = entity.value;
    mark.title = `${entity.entity} = ${entity.value} (${entity.extractor}, ` +
                 `${(entity.confidence * 100).toFixed(1)}%)`;
    const type = document.createElement("span");
    type.className = "entity-type";
    type.textContent = written === entity.value ? entity.entity
                                                : `${entity.entity}: ${entity.value}`;
    mark.append(written, type);
    line.append(chars.slice(at, entity.start).join(""), mark);
    at = entity.end;
  }
  line.append(chars.slice(at).join(""));
}

function render(result) {
  const answer = document.getElementById("answer");
  answer.dataset.intent = result.intent;
  answer.dataset.fallback = String(result.fallback);
  answer.dataset.modelType = result.model_type;
  answer.textContent = result.fallback
    ? `Fallback: not sure (${(result.confidence * 100).toFixed(1)}%)`
    : result.model_type === "rule" ? `Intent: ${result.intent} (an intent rule)`
    : `Intent: ${result.intent} (${(result.confidence * 100).toFixed(1)}%)`;
  const bars = document.getElementById("bars");
  bars.replaceChildren(...result.top_k.map(({ intent, confidence }) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.intent = intent;
    row.innerHTML = '<span class="name"></span><span class="fill"></span>' +
                    '<span class="confidence"></span>';
    row.querySelector(".name").textContent = intent;
    row.querySelector(".fill").style.width = `${Math.round(confidence * 200)}px`;
    row.querySelector(".confidence").textContent = `${(confidence * 100).toFixed(1)}%`;
    return row;
  }));
}

window.intentkit = { stats: null };
window.intentkit.ready = load().then((loaded) => {
  window.intentkit.classify = loaded.classify;
  window.intentkit.stats = loaded.stats;
  const input = document.getElementById("message");
  input.disabled = false;
  const entityNote = loaded.entities.exported ? "" :
    `Entities: none in this export.${loaded.entities.why ? ` ${loaded.entities.why}.` : ""}`;
  show("entities", entityNote);
  show("status", `Model loaded in ${Math.round(loaded.stats.loadMs)} ms ` +
       `(${(loaded.stats.modelBytes / 1e6).toFixed(1)} MB, ${loaded.stats.precision}); ` +
       "everything runs in this page.");
  let latest = 0;
  input.addEventListener("input", async () => {
    const asked = ++latest;
    const text = input.value;
    try {
      const result = await loaded.classify(text);
      if (asked !== latest) return;  // an older answer never replaces a newer one
      render(result);
      if (loaded.entities.exported) showEntities(text, result.entities);
    } catch (error) {
      show("error", String(error.message || error));
    }
  });
  return true;
}).catch((error) => {
  show("status", "");
  show("error", `Cannot load the model: ${error.message || error}`);
  window.intentkit.error = String(error.message || error);
  return false;
});
