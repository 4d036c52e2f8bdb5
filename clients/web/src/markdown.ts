// Markdown of model replies, rendered into DOM nodes. Safe by construction: every piece of
// text goes through textContent and no string is ever parsed as HTML, so `<img onerror=…>` in a
// reply shows as those characters. Links keep only http:, https: and mailto: targets.
//
// The subset: paragraphs, headings (#…######), bullet and numbered lists, block quotes, fenced
// code blocks, and inline `code`, **strong**, *emphasis* / _emphasis_ and [links](https://…).

const SAFE_URL = /^(https?:|mailto:)/i;

/** Inline Markdown of one block: code spans first, then links, strong, emphasis. */
function inline(text: string, into: Node): void {
  // Alternatives, in priority order: `code`, [text](url), **strong**, *em*, _em_.
  const pattern = /`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\)|\*\*(.+?)\*\*|\*([^*\s](?:[^*]*[^*\s])?)\*|\b_([^_]+)_\b/g;
  let last = 0;
  for (const m of text.matchAll(pattern)) {
    const at = m.index;
    if (at > last) into.appendChild(document.createTextNode(text.slice(last, at)));
    last = at + m[0].length;
    if (m[1] !== undefined) {
      const code = document.createElement("code");
      code.textContent = m[1];
      into.appendChild(code);
    } else if (m[2] !== undefined && m[3] !== undefined) {
      if (SAFE_URL.test(m[3])) {
        const a = document.createElement("a");
        a.href = m[3];
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        inline(m[2], a);
        into.appendChild(a);
      } else {
        into.appendChild(document.createTextNode(m[0]));
      }
    } else if (m[4] !== undefined) {
      const strong = document.createElement("strong");
      inline(m[4], strong);
      into.appendChild(strong);
    } else {
      const em = document.createElement("em");
      inline(m[5] ?? m[6] ?? "", em);
      into.appendChild(em);
    }
  }
  if (last < text.length) into.appendChild(document.createTextNode(text.slice(last)));
}

/** Lines joined with line breaks, each rendered inline. */
function lines(ls: string[], into: HTMLElement): HTMLElement {
  ls.forEach((l, i) => {
    if (i > 0) into.appendChild(document.createElement("br"));
    inline(l, into);
  });
  return into;
}

const FENCE = /^\s*```/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d+[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;

/** Renders Markdown `text` into a fragment of safe DOM nodes. */
export function renderMarkdown(text: string): DocumentFragment {
  const out = document.createDocumentFragment();
  const src = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < src.length) {
    const line = src[i] ?? "";
    if (line.trim() === "") {
      i++;
      continue;
    }
    if (FENCE.test(line)) {
      const lang = line.trim().slice(3).trim();
      const body: string[] = [];
      i++;
      while (i < src.length && !FENCE.test(src[i] ?? "")) body.push(src[i++] ?? "");
      i++; // the closing fence (or the end of a reply still streaming)
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      if (lang) code.dataset.lang = lang;
      code.textContent = body.join("\n");
      pre.appendChild(code);
      out.appendChild(pre);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const h = document.createElement(`h${Math.min(6, (heading[1] ?? "#").length + 2)}` as "h3");
      inline(heading[2] ?? "", h);
      out.appendChild(h);
      i++;
      continue;
    }
    const listKind = BULLET.test(line) ? BULLET : NUMBERED.test(line) ? NUMBERED : undefined;
    if (listKind) {
      const list = document.createElement(listKind === BULLET ? "ul" : "ol");
      for (let item = listKind.exec(src[i] ?? ""); item && i < src.length; item = listKind.exec(src[i] ?? "")) {
        const li = document.createElement("li");
        inline(item[1] ?? "", li);
        list.appendChild(li);
        i++;
      }
      out.appendChild(list);
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted: string[] = [];
      while (i < src.length && QUOTE.test(src[i] ?? "")) quoted.push(QUOTE.exec(src[i++] ?? "")?.[1] ?? "");
      out.appendChild(lines(quoted, document.createElement("blockquote")));
      continue;
    }
    const para: string[] = [];
    while (i < src.length) {
      const l = src[i] ?? "";
      if (l.trim() === "" || FENCE.test(l) || HEADING.test(l) || BULLET.test(l) || NUMBERED.test(l) || QUOTE.test(l)) break;
      para.push(l);
      i++;
    }
    out.appendChild(lines(para, document.createElement("p")));
  }
  return out;
}
