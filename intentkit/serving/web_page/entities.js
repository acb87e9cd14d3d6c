// A message's entities from the export's entities.json, found as the Python service finds them:
// the CRF labeller's features recomputed, CRFsuite's Viterbi and marginals over the exported
// weights, BIO tags to spans, then the lookups, regexes and synonyms; and the run's intent
// rules. The file and the Python
// reference that the export is verified with are described in intentkit/serving/entity_export.py.
// Offsets count code points (an emoji is one), as Python's do.
"use strict";

const WORD_CHARACTER = /^[\p{L}\p{N}_]$/u;  // Python's \w (entity_export's test says so)
const UPPER = /^\p{Uppercase}$/u;
const LOWER = /^\p{Lowercase}$/u;
const TITLE = /^\p{Lt}$/u;
const DECIMAL = /^\p{Nd}$/u;

function mapOf(object) {
  // A Map, not the object: a key like "constructor" must not reach Object.prototype.
  return new Map(Object.entries(object));
}

function withoutOverlaps(entities) {
  // annotations.without_overlaps: the longest (then earliest) of overlapping ones, by start.
  const kept = [];
  const longestFirst = [...entities].sort(
    (a, b) => (b.end - b.start) - (a.end - a.start) || a.start - b.start);
  for (const entity of longestFirst) {
    if (kept.every((other) => entity.end <= other.start || entity.start >= other.end)) {
      kept.push(entity);
    }
  }
  return kept.sort((a, b) => a.start - b.start);
}

function logSum(values) {
  const top = Math.max(...values);
  return top + Math.log(values.reduce((sum, v) => sum + Math.exp(v - top), 0));
}

// The file's format and the labeller's feature set this reader computes.
const FORMAT = ["intentkit-entities", 1];
const FEATURES = "intentkit-crf-word-features-1";

class PortableEntities {
  constructor(document) {
    if (document.format !== FORMAT[0] || document.format_version !== FORMAT[1] ||
        (document.labeller && document.labeller.features !== FEATURES)) {
      throw new Error(`entities.json: ${document.format} ${document.format_version} with ` +
                      `features ${document.labeller?.features}; this page reads ` +
                      `${FORMAT.join(" ")} with ${FEATURES}: export the page again`);
    }
    this.maxChars = document.max_chars;
    this.labeller = document.labeller;
    const facts = document.unicode;
    this.spaces = new Set(facts.space);
    this.digitExtra = new Set(facts.digit_extra);
    this.folds = mapOf(facts.casefold);
    this.typeSynonyms = new Map(Object.entries(document.type_synonyms)
      .map(([entity, synonyms]) => [entity, mapOf(synonyms)]));
    this.synonyms = new Map(document.synonyms.map(
      ([entity, written, canonical]) => [`${entity}\u0000${written}`, canonical]));
    this.matchers = document.matchers.map((m) => ({
      entity: m.entity, extractor: m.extractor, pattern: new RegExp(m.pattern, "gu") }));
    this.rules = document.rules.map((r) => ({ intent: r.intent,
                                              pattern: new RegExp(r.pattern, "u") }));
    if (this.labeller) this.weights = mapOf(this.labeller.attributes);
  }

  // The intent of the first intent rule matching the message (it overrides the model), or null.
  rule(text) {
    const found = this.rules.find((r) => r.pattern.test(text));
    return found ? found.intent : null;
  }

  // --- Python's str methods ---------------------------------------------------------------
  casefold(text) {
    return Array.from(text, (c) => this.folds.get(c) ?? c.toLowerCase()).join("");
  }

  isDigit(word) {
    const chars = Array.from(word);
    return chars.length > 0 &&
      chars.every((c) => DECIMAL.test(c) || this.digitExtra.has(c.codePointAt(0)));
  }

  static isUpper(word) {
    const chars = Array.from(word);
    if (chars.length === 1) return UPPER.test(chars[0]);
    let cased = false;
    for (const c of chars) {
      if (LOWER.test(c) || TITLE.test(c)) return false;
      if (UPPER.test(c)) cased = true;
    }
    return cased;
  }

  static isTitle(word) {
    const chars = Array.from(word);
    if (chars.length === 1) return TITLE.test(chars[0]) || UPPER.test(chars[0]);
    let cased = false;
    let previousCased = false;
    for (const c of chars) {
      if (UPPER.test(c) || TITLE.test(c)) {
        if (previousCased) return false;
        previousCased = cased = true;
      } else if (LOWER.test(c)) {
        if (!previousCased) return false;
        previousCased = cased = true;
      } else {
        previousCased = false;
      }
    }
    return cased;
  }

  // --- lookups and regexes (EntityTypes.find) ---------------------------------------------
  canonicalOfType(entity, written) {
    return this.typeSynonyms.get(entity)?.get(this.casefold(written)) ?? written;
  }

  find(text, chars) {
    const point = new Array(text.length + 1);  // UTF-16 index -> code point index
    let unit = 0;
    chars.forEach((c, index) => { point[unit] = index; unit += c.length; });
    point[text.length] = chars.length;
    const found = [];
    for (const { entity, extractor, pattern } of this.matchers) {
      // From where the last match ended; one character on after an empty one (re2's finditer).
      let at = 0;
      while (at <= text.length) {
        pattern.lastIndex = at;
        const match = pattern.exec(text);
        if (!match) break;
        const start = match.index;
        const end = start + match[0].length;
        if (end > start) {
          found.push({ entity, value: this.canonicalOfType(entity, match[0]),
                       start: point[start], end: point[end], confidence: 1.0, extractor });
          at = end;
        } else {
          at = end + (text.codePointAt(end) > 0xffff ? 2 : 1);
        }
      }
    }
    return withoutOverlaps(found);
  }

  // --- the CRF labeller (CrfTagger.predict) -------------------------------------------------
  tokenize(chars) {
    // models.entity_tagger.tokenize: runs of word characters, every other non-space alone.
    const tokens = [];
    for (let i = 0; i < chars.length;) {
      if (WORD_CHARACTER.test(chars[i])) {
        let j = i + 1;
        while (j < chars.length && WORD_CHARACTER.test(chars[j])) j += 1;
        tokens.push([i, j]);
        i = j;
      } else {
        if (!this.spaces.has(chars[i].codePointAt(0))) tokens.push([i, i + 1]);
        i += 1;
      }
    }
    return tokens;
  }

  static shape(word) {
    return word.replace(/\p{Nd}/gu, "0").replace(/[a-z]/g, "a").replace(/[A-Z]/g, "A")
      .replace(/([\s\S])\1+/gu, "$1$1");
  }

  // entity_tagger.crf_features, as CRFsuite reads them: [attribute, value] per token.
  attributes(chars, tokens, matched) {
    const words = tokens.map(([start, end]) => chars.slice(start, end).join(""));
    const lower = words.map((w) => w.toLowerCase());
    const near = (j) => (j >= 0 && j < words.length ? lower[j] : j < 0 ? "<s>" : "</s>");
    const matchTypes = this.labeller.match_types;
    return words.map((word, i) => {
      const points = Array.from(lower[i]);
      const row = [
        ["bias", 1], [`w:${lower[i]}`, 1], [`p3:${points.slice(0, 3).join("")}`, 1],
        [`s3:${points.slice(-3).join("")}`, 1], [`s2:${points.slice(-2).join("")}`, 1],
        [`shape:${PortableEntities.shape(word)}`, 1], ["digit", this.isDigit(word) ? 1 : 0],
        ["title", PortableEntities.isTitle(word) ? 1 : 0],
        ["upper", PortableEntities.isUpper(word) ? 1 : 0],
        ["len", Math.min(Array.from(word).length, 8)],
        [`w-2:${near(i - 2)}`, 1], [`w-1:${near(i - 1)}`, 1], [`w+1:${near(i + 1)}`, 1],
        [`w+2:${near(i + 2)}`, 1], [`bigram-:${near(i - 1)}|${lower[i]}`, 1],
        [`bigram+:${lower[i]}|${near(i + 1)}`, 1]];
      matchTypes.forEach((name, column) => {
        if (matched[i][column]) row.push([`match:${name}`, 1]);
      });
      return row.map(([name, value]) => [name.split("\u0000")[0], value]);  // a C string
    });
  }

  // CRFsuite's Viterbi (ties to the lower label index) and its marginals (forward-backward).
  tag(chars, tokens, found) {
    const { labels, transitions, match_types: matchTypes } = this.labeller;
    const size = labels.length;
    const matched = tokens.map(() => matchTypes.map(() => false));
    for (const m of found) {
      const column = matchTypes.indexOf(m.entity);
      if (column < 0) continue;
      tokens.forEach(([start, end], i) => {
        if (start < m.end && end > m.start) matched[i][column] = true;
      });
    }
    const scores = this.attributes(chars, tokens, matched).map((row) => {
      const score = new Array(size).fill(0);
      for (const [name, value] of row) {
        for (const [label, weight] of this.weights.get(name) || []) score[label] += weight * value;
      }
      return score;
    });
    let best = [...scores[0]];
    const back = [];
    for (const score of scores.slice(1)) {
      const previous = best;
      const pointers = [];
      best = [];
      for (let j = 0; j < size; j += 1) {
        let top = -Infinity;
        let topIndex = -1;
        for (let i = 0; i < size; i += 1) {
          const candidate = previous[i] + transitions[i][j];
          if (top < candidate) { top = candidate; topIndex = i; }
        }
        best.push(top + score[j]);
        pointers.push(topIndex);
      }
      back.push(pointers);
    }
    let last = 0;
    for (let j = 1; j < size; j += 1) if (best[last] < best[j]) last = j;
    const path = [last];
    for (let t = back.length - 1; t >= 0; t -= 1) path.push(back[t][path[path.length - 1]]);
    path.reverse();
    const forward = [scores[0]];
    for (const score of scores.slice(1)) {
      const previous = forward[forward.length - 1];
      forward.push(score.map((s, j) => s + logSum(previous.map((p, i) => p + transitions[i][j]))));
    }
    const backward = [new Array(size).fill(0)];
    for (let t = scores.length - 1; t > 0; t -= 1) {
      const next = backward[0];
      backward.unshift(labels.map((_, i) => logSum(
        scores[t].map((s, j) => transitions[i][j] + s + next[j]))));
    }
    const total = logSum(forward[forward.length - 1]);
    return path.map((y, t) => [labels[y], Math.exp(forward[t][y] + backward[t][y] - total)]);
  }

  labelled(chars, found) {
    const tokens = this.tokenize(chars);
    if (!this.labeller || !tokens.length) return [];
    // entity_tagger.decode: BIO to spans; an I- that continues nothing starts an entity.
    const entities = [];
    let current = null;
    this.tag(chars, tokens, found).forEach(([tag, confidence], i) => {
      const [start, end] = tokens[i];
      const dash = tag.indexOf("-");
      const kind = dash < 0 ? tag : tag.slice(0, dash);
      const entity = dash < 0 ? "" : tag.slice(dash + 1);
      if (kind === "I" && current && current.entity === entity) {
        current.end = end;
        current.scores.push(confidence);
        return;
      }
      current = null;
      if (kind === "B" || kind === "I") {
        current = { entity, start, end, scores: [confidence] };
        entities.push(current);
      }
    });
    return entities.map(({ entity, start, end, scores }) => ({
      entity, value: chars.slice(start, end).join(""), start, end,
      confidence: Number((scores.reduce((a, b) => a + b, 0) / scores.length).toFixed(4)),
      extractor: "crf" }));
  }

  // serving.entities.EntityExtractor.extract: the labeller's entities with canonical values,
  // then the lookup/regex matches where the labeller found nothing.
  extract(message) {
    const chars = Array.from(message).slice(0, this.maxChars);
    const text = chars.join("");
    const found = this.find(text, chars);
    const entities = this.labelled(chars, found);
    for (const entity of entities) {
      entity.value = this.synonyms.get(`${entity.entity}\u0000${this.casefold(entity.value)}`) ??
        this.canonicalOfType(entity.entity, entity.value);
    }
    const free = found.filter((m) => entities.every((e) => m.end <= e.start || m.start >= e.end));
    return withoutOverlaps([...entities, ...free]);
  }
}

window.PortableEntities = PortableEntities;
