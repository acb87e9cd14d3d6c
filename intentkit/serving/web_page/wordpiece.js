// BERT's uncased WordPiece, as the `tokenizers` library's BertWordPieceTokenizer runs it from
// the export's tokenizer.json: clean, split CJK, strip accents, lowercase, split punctuation,
// greedy longest-match pieces ("##" continuations), [CLS] ... [SEP], at most maxTokens ids.
"use strict";

class WordPiece {
  constructor(tokenizerJson) {
    const model = tokenizerJson.model;
    this.vocab = new Map(Object.entries(model.vocab));
    this.unk = this.vocab.get(model.unk_token);
    this.prefix = model.continuing_subword_prefix;
    this.maxChars = model.max_input_chars_per_word;
    this.cls = this.vocab.get("[CLS]");
    this.sep = this.vocab.get("[SEP]");
    this.maxTokens = tokenizerJson.truncation ? tokenizerJson.truncation.max_length : 512;
  }

  static isPunctuation(ch) {
    const c = ch.codePointAt(0);
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
      (c >= 123 && c <= 126) || /\p{P}/u.test(ch);
  }

  static isCjk(c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
      (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2CEAF) ||
      (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
  }

  words(text) {
    let cleaned = "";
    for (const ch of text) {
      const c = ch.codePointAt(0);
      if (c === 0 || c === 0xFFFD) continue;
      if (ch === "\t" || ch === "\n" || ch === "\r" || /\s/u.test(ch)) { cleaned += " "; continue; }
      if (/\p{C}/u.test(ch)) continue;
      cleaned += WordPiece.isCjk(c) ? ` ${ch} ` : ch;
    }
    const words = [];
    for (let word of cleaned.split(" ")) {
      if (!word) continue;
      word = word.normalize("NFD").replace(/\p{Mn}/gu, "").toLowerCase();
      let current = "";
      for (const ch of word) {
        if (WordPiece.isPunctuation(ch)) {
          if (current) words.push(current);
          words.push(ch);
          current = "";
        } else {
          current += ch;
        }
      }
      if (current) words.push(current);
    }
    return words;
  }

  pieces(word) {
    const chars = Array.from(word);
    if (chars.length > this.maxChars) return [this.unk];
    const pieces = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length, found = null;
      while (end > start) {
        const piece = (start > 0 ? this.prefix : "") + chars.slice(start, end).join("");
        if (this.vocab.has(piece)) { found = this.vocab.get(piece); break; }
        end -= 1;
      }
      if (found === null) return [this.unk];
      pieces.push(found);
      start = end;
    }
    return pieces;
  }

  encode(text) {
    const ids = [];
    for (const word of this.words(text)) ids.push(...this.pieces(word));
    return [this.cls, ...ids.slice(0, this.maxTokens - 2), this.sep];
  }
}
