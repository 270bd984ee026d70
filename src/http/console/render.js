// How record bytes are shown. The API gives each key, value and header value
// as {base64, utf8} (utf8 null when the bytes are not valid UTF-8); a
// tombstone's value is null. The rule, in order:
//   1. exactly one MessagePack value that is not a plain string or number
//      (a map, array, nil, boolean, bin or ext): JSON-like text, "msgpack";
//   2. valid UTF-8: the text, "text";
//   3. anything else: hex, "hex" (the first MAX_HEX bytes, then the length).
// A map's or array's MessagePack encoding starts with a byte that cannot
// start UTF-8 (0x80-0x9f) or needs a length UTF-8 text almost never has, so
// rule 1 does not steal text; plain strings and numbers are left to rules 2
// and 3 because most short byte strings decode as one.

import { h } from "./dom.js";
import { decode, hex, isPlain, show } from "./msgpack.js";

/** Bytes shown in hex at most; the rest is counted. */
const MAX_HEX = 1024;

/** {kind, text} for the API's rendering of some bytes. */
export function classify(shown) {
  if (shown === null || shown === undefined) return { kind: "null", text: "null" };
  const bytes = fromBase64(shown.base64);
  const decoded = decode(bytes);
  if (decoded !== undefined && !isPlain(decoded.value)) return { kind: "msgpack", text: show(decoded.value) };
  if (typeof shown.utf8 === "string") return { kind: "text", text: shown.utf8 };
  const head = hex(bytes.subarray(0, MAX_HEX)).replace(/(..)(?!$)/g, "$1 ");
  const more = bytes.length > MAX_HEX ? ` … (${bytes.length} bytes in all)` : "";
  return { kind: "hex", text: head + more };
}

/** A cell's content for some bytes; `none` names what a null means. */
export function bytesCell(shown, none) {
  if (shown === null || shown === undefined) {
    return h("div", { class: "kind " + (none === "tombstone" ? "tombstone" : ""), "data-kind": none }, none);
  }
  const { kind, text } = classify(shown);
  return [h("div", { class: "kind", "data-kind": kind }, kind), h("pre", { "data-kind": kind }, text)];
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
