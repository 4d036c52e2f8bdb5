// The chat screen: the sessions sidebar (pinned first, archived view, search, load more), the
// open conversation (earlier messages on demand, tool calls, Markdown replies) and the streamed
// exchange, which stays with its own session when the user opens another one meanwhile.
import { ArchivedFilter, FinishReason, MessageRole } from "@assistd/client";
import type { AssistdClient } from "@assistd/client";
import { $, button, client, el, when, words } from "./app.js";
import { renderMarkdown } from "./markdown.js";

type Chat = AssistdClient["chat"];
type Session = NonNullable<Awaited<ReturnType<Chat["getSession"]>>["session"]>;
type ChatMessage = Awaited<ReturnType<Chat["listMessages"]>>["messages"][number];
type SearchHit = Awaited<ReturnType<Chat["searchMessages"]>>["hits"][number];

const ROLE_USER = MessageRole.USER;
const ROLE_MODEL = MessageRole.MODEL;
const ROLE_FUNCTION_CALL = MessageRole.FUNCTION_CALL;
const ROLE_FUNCTION_RESULT = MessageRole.FUNCTION_RESULT;
const FINISH_CANCELLED = FinishReason.CANCELLED;
const FINISH_INCOMPLETE = FinishReason.INCOMPLETE;
const FINISH_ERROR = FinishReason.ERROR;
const ARCHIVED_EXCLUDE = ArchivedFilter.EXCLUDE;
const ARCHIVED_ONLY = ArchivedFilter.ONLY;

const SESSIONS_PAGE = 20;
const MESSAGES_PAGE = 50;
const SEARCH_PAGE = 20;

// ---------------------------------------------------------------- sidebar

/** One filtered listing the sidebar walks through, page by page. */
interface Listing {
  archived: number;
  pinned: boolean | undefined;
  token: string;
  done: boolean;
}

let view: "active" | "archived" = "active";
let listings: Listing[] = [];
let sidebarGeneration = 0;
let currentSession = "";
let current: Session | undefined;

function sessionItem(s: Session): HTMLLIElement {
  const li = el("li", s.pinned ? "pinned" : "");
  li.dataset.id = s.id;
  li.title = s.title || "New chat";
  li.append(el("span", "title", s.title || "New chat"));
  if (s.pinned) li.append(el("span", "badge", "pinned"));
  li.classList.toggle("selected", s.id === currentSession);
  li.addEventListener("click", () => void openSession(s.id));
  return li;
}

/** Loads the next page(s) of the sidebar, until `wanted` sessions have been added. */
async function loadMoreSessions(generation = sidebarGeneration, wanted = SESSIONS_PAGE): Promise<void> {
  let added = 0;
  const more = $<HTMLButtonElement>("sessions-more");
  more.disabled = true;
  $("sessions").setAttribute("aria-busy", "true");
  try {
    for (const listing of listings) {
      while (!listing.done && added < wanted) {
        const res = await client.chat.listSessions({
          pageSize: SESSIONS_PAGE,
          pageToken: listing.token,
          archived: listing.archived,
          ...(listing.pinned === undefined ? {} : { pinned: listing.pinned }),
        });
        if (generation !== sidebarGeneration) return; // the sidebar was reset meanwhile
        $("sessions").append(...res.sessions.map(sessionItem));
        added += res.sessions.length;
        listing.token = res.nextPageToken;
        listing.done = res.nextPageToken === "";
      }
    }
  } catch (err) {
    $("chat-error").textContent = words(err);
  } finally {
    if (generation === sidebarGeneration) {
      $("sessions").setAttribute("aria-busy", "false");
      more.disabled = false;
      more.hidden = listings.every((l) => l.done);
      $("sessions-empty").hidden = $("sessions").childElementCount > 0;
    }
  }
}

/**
 * Reloads the sidebar from its first page; with `keep`, as many sessions as it showed (after a
 * rename, pin or archive, so the list does not shrink under the user).
 */
export async function loadSessions(keep = false): Promise<void> {
  const wanted = keep ? Math.max(SESSIONS_PAGE, $("sessions").childElementCount) : SESSIONS_PAGE;
  const generation = ++sidebarGeneration;
  listings =
    view === "archived"
      ? [{ archived: ARCHIVED_ONLY, pinned: undefined, token: "", done: false }]
      : [
          { archived: ARCHIVED_EXCLUDE, pinned: true, token: "", done: false },
          { archived: ARCHIVED_EXCLUDE, pinned: false, token: "", done: false },
        ];
  $("sessions").replaceChildren();
  $("sessions-heading").textContent = view === "archived" ? "Archived chats" : "Chats";
  $("toggle-archived").textContent = view === "archived" ? "Back to chats" : "Archived chats";
  await loadMoreSessions(generation, wanted);
}

$("sessions-more").addEventListener("click", () => void loadMoreSessions());
$("toggle-archived").addEventListener("click", () => {
  view = view === "archived" ? "active" : "archived";
  void loadSessions();
});

/** The server titles a new session in the background after its first exchange: look again a few times. */
async function refreshUntilTitled(id: string): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      const { session } = await client.chat.getSession({ sessionId: id });
      if (session?.title) {
        if (currentSession === id) showHeader(session);
        await loadSessions(true);
        return;
      }
    } catch {
      return; // deleted meanwhile
    }
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

// ---------------------------------------------------------------- search

let searchQuery = "";
let searchToken = "";

function hitItem(hit: SearchHit): HTMLLIElement {
  const li = el("li", "hit");
  li.dataset.sessionId = hit.sessionId;
  li.dataset.messageId = hit.messageId;
  li.append(el("strong", "", hit.sessionTitle || "New chat"), el("small", "", ` ${when(hit.createTime)}`));
  const snippet = el("div", "snippet");
  for (const seg of hit.snippetSegments.length ? hit.snippetSegments : [{ text: hit.snippet, highlighted: false }]) {
    snippet.append(seg.highlighted ? el("mark", "", seg.text) : document.createTextNode(seg.text));
  }
  li.append(snippet);
  li.addEventListener("click", () => void openSession(hit.sessionId, hit.sequence, hit.messageId));
  return li;
}

async function search(more: boolean): Promise<void> {
  $("search-error").textContent = "";
  try {
    const res = await client.chat.searchMessages({ query: searchQuery, pageSize: SEARCH_PAGE, pageToken: more ? searchToken : "" });
    if (!more) $("search-results").replaceChildren();
    $("search-results").append(...res.hits.map(hitItem));
    searchToken = res.nextPageToken;
    $("search-more").hidden = searchToken === "";
    $("search-empty").hidden = $("search-results").childElementCount > 0;
  } catch (err) {
    $("search-error").textContent = words(err);
  }
}

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  searchQuery = $<HTMLInputElement>("search-query").value.trim();
  const searching = searchQuery !== "";
  $("search-panel").hidden = !searching;
  $("sessions-panel").hidden = searching;
  if (searching) void search(false);
});
$("search-more").addEventListener("click", () => void search(true));
$("search-clear").addEventListener("click", () => {
  $<HTMLInputElement>("search-query").value = "";
  searchQuery = "";
  $("search-panel").hidden = true;
  $("sessions-panel").hidden = false;
});

// ---------------------------------------------------------------- the open session

let openGeneration = 0;
let olderToken = "";

function showHeader(s: Session | undefined): void {
  current = s;
  $("chat-header").hidden = !s;
  $("rename-form").hidden = true;
  $("delete-confirm").hidden = true;
  if (!s) return;
  $("session-title").textContent = s.title || "New chat";
  $("pin-session").textContent = s.pinned ? "Unpin" : "Pin";
  $("archive-session").textContent = s.archived ? "Unarchive" : "Archive";
  $("session-state").textContent = [s.pinned ? "pinned" : "", s.archived ? "archived" : ""].filter(Boolean).join(", ");
}

function selectInSidebar(id: string): void {
  for (const li of $("sessions").querySelectorAll<HTMLLIElement>("li")) li.classList.toggle("selected", li.dataset.id === id);
}

/** Whether the conversation is scrolled to (nearly) its end. */
function atBottom(): boolean {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

function toBottom(): void {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function json(value: unknown): string {
  return JSON.stringify(value ?? {});
}

/** One stored message as a list item. */
function messageItem(m: ChatMessage): HTMLLIElement {
  const c = m.content;
  let li: HTMLLIElement;
  if (c.case === "functionCall") {
    li = el("li", "tool tool-call");
    li.append(el("span", "tool-label", "Tool call "), el("code", "tool-name", c.value.name), el("span", "tool-args", ` ${json(c.value.args)}`));
  } else if (c.case === "functionResult") {
    li = el("li", c.value.failed ? "tool tool-result failed" : "tool tool-result");
    const details = el("details");
    const summary = el("summary");
    summary.append(el("span", "tool-label", c.value.failed ? "Tool failed " : "Tool result "), el("code", "tool-name", c.value.name));
    details.append(summary, el("pre", "tool-response", JSON.stringify(c.value.response ?? {}, null, 2)));
    li.append(details);
  } else if (m.role === ROLE_USER) {
    li = el("li", "user", c.case === "text" ? c.value : "");
  } else if (m.role === ROLE_MODEL) {
    li = el("li", "model");
    const meta = m.metadata;
    const text = c.case === "text" ? c.value : "";
    if (meta?.finishReason === FINISH_ERROR) {
      li.dataset.state = "failed";
      li.textContent = meta.error?.message || "The reply failed.";
      return withIds(li, m);
    }
    li.append(renderMarkdown(text));
    li.dataset.state = meta?.finishReason === FINISH_CANCELLED ? "cancelled" : meta?.finishReason === FINISH_INCOMPLETE ? "incomplete" : "done";
    return withIds(li, m);
  } else {
    li = el("li", "system", c.case === "text" ? c.value : "");
  }
  li.dataset.state = "done";
  return withIds(li, m);
}

function withIds(li: HTMLLIElement, m: ChatMessage): HTMLLIElement {
  li.dataset.id = m.id;
  li.dataset.seq = String(m.sequence);
  return li;
}

/** Opens a session: its newest messages, or enough older pages to show message `focusId`. */
export async function openSession(id: string, focusSequence?: bigint, focusId?: string): Promise<void> {
  const generation = ++openGeneration;
  currentSession = id;
  olderToken = "";
  $("messages").replaceChildren();
  $("messages-more").hidden = true;
  $("chat-error").textContent = "";
  selectInSidebar(id);
  updateComposer();
  try {
    const [{ session }, page] = await Promise.all([
      client.chat.getSession({ sessionId: id }),
      client.chat.listMessages({ sessionId: id, pageSize: MESSAGES_PAGE }),
    ]);
    if (generation !== openGeneration) return;
    showHeader(session);
    // An exchange still streaming into this session is shown from its live items instead.
    const liveFrom = live?.sessionId === id ? live.firstSequence : undefined;
    const stored = page.messages.filter((m) => live?.sessionId !== id || liveFrom === undefined || m.sequence < liveFrom);
    $("messages").append(...stored.reverse().map(messageItem));
    if (live?.sessionId === id) $("messages").append(...live.nodes);
    olderToken = page.nextPageToken;
    $("messages-more").hidden = olderToken === "";
    toBottom();
    if (focusSequence !== undefined && focusId) await focusMessage(generation, focusSequence, focusId);
  } catch (err) {
    if (generation === openGeneration) $("chat-error").textContent = words(err);
  }
}

async function focusMessage(generation: number, sequence: bigint, id: string): Promise<void> {
  for (let pages = 0; pages < 40 && olderToken && !$("messages").querySelector(`li[data-id="${CSS.escape(id)}"]`); pages++) {
    const oldest = $("messages").querySelector<HTMLLIElement>("li[data-seq]");
    if (oldest && BigInt(oldest.dataset.seq ?? "0") <= sequence) break;
    await loadOlder(generation);
  }
  const target = $("messages").querySelector<HTMLLIElement>(`li[data-id="${CSS.escape(id)}"]`);
  if (!target) return;
  for (const li of $("messages").querySelectorAll(".focused")) li.classList.remove("focused");
  target.classList.add("focused");
  target.scrollIntoView({ block: "center" });
}

/** Prepends the next older page, keeping what is on screen where it is. */
async function loadOlder(generation = openGeneration): Promise<void> {
  if (!olderToken) return;
  const box = $("messages");
  const page = await client.chat.listMessages({ sessionId: currentSession, pageSize: MESSAGES_PAGE, pageToken: olderToken });
  if (generation !== openGeneration) return;
  const fromBottom = box.scrollHeight - box.scrollTop;
  box.prepend(...page.messages.reverse().map(messageItem));
  box.scrollTop = box.scrollHeight - fromBottom;
  olderToken = page.nextPageToken;
  $("messages-more").hidden = olderToken === "";
}

$("messages-more").addEventListener("click", async () => {
  try {
    await loadOlder();
  } catch (err) {
    $("chat-error").textContent = words(err);
  }
});

/** Forgets the open session (after it was deleted, or on sign-out). */
export function closeSession(): void {
  openGeneration++;
  currentSession = "";
  showHeader(undefined);
  $("messages").replaceChildren();
  $("messages-more").hidden = true;
  updateComposer();
}

$("new-session").addEventListener("click", async () => {
  try {
    const { session } = await client.chat.createSession({});
    if (session) {
      view = "active";
      await loadSessions();
      await openSession(session.id);
    }
  } catch (err) {
    $("chat-error").textContent = words(err);
  }
});

// ---------------------------------------------------------------- session actions

async function updateCurrent(patch: Partial<Pick<Session, "title" | "pinned" | "archived">>): Promise<void> {
  if (!current) return;
  $("chat-error").textContent = "";
  $("rename-error").textContent = "";
  try {
    const { session } = await client.chat.updateSession({ session: { ...current, ...patch }, updateMask: { paths: Object.keys(patch) } });
    showHeader(session);
    await loadSessions(true);
  } catch (err) {
    if (patch.title !== undefined) $("rename-error").textContent = words(err);
    else $("chat-error").textContent = words(err);
  }
}

$("rename-session").addEventListener("click", () => {
  $("rename-form").hidden = false;
  $("rename-error").textContent = "";
  const input = $<HTMLInputElement>("rename-input");
  input.value = current?.title ?? "";
  input.focus();
});
$("rename-cancel").addEventListener("click", () => ($("rename-form").hidden = true));
$("rename-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  void updateCurrent({ title: $<HTMLInputElement>("rename-input").value.trim() });
});
$("pin-session").addEventListener("click", () => void updateCurrent({ pinned: !current?.pinned }));
$("archive-session").addEventListener("click", () => void updateCurrent({ archived: !current?.archived }));
$("delete-session").addEventListener("click", () => ($("delete-confirm").hidden = false));
$("delete-cancel").addEventListener("click", () => ($("delete-confirm").hidden = true));
$("delete-confirmed").addEventListener("click", async () => {
  const id = currentSession;
  if (!id) return;
  if (live?.sessionId === id) live.abort.abort();
  try {
    await client.chat.deleteSession({ sessionId: id });
    closeSession();
    await loadSessions(true);
  } catch (err) {
    $("chat-error").textContent = words(err);
  }
});

// ---------------------------------------------------------------- sending

/** The exchange being streamed: its session and the items it has added so far. */
interface LiveExchange {
  sessionId: string;
  nodes: HTMLLIElement[];
  /** Sequence of the committed user message; stored messages from here on are live items. */
  firstSequence: bigint | undefined;
  abort: AbortController;
}

let live: LiveExchange | undefined;

/** Adds an item of the live exchange; it shows only while its session is open. */
function place(exchange: LiveExchange, li: HTMLLIElement): HTMLLIElement {
  if (!exchange.nodes.includes(li)) exchange.nodes.push(li);
  if (currentSession === exchange.sessionId) {
    const follow = atBottom();
    if (!li.isConnected) $("messages").append(li);
    if (follow) toBottom();
  }
  return li;
}

/** Send, Stop and the hint follow where the streaming exchange is. */
function updateComposer(): void {
  const streamingHere = live !== undefined && live.sessionId === currentSession;
  $("send").hidden = streamingHere;
  $<HTMLButtonElement>("send").disabled = live !== undefined;
  $("cancel").hidden = !streamingHere;
  $("streaming-elsewhere").hidden = live === undefined || streamingHere;
}

$("streaming-elsewhere").addEventListener("click", () => {
  if (live) void openSession(live.sessionId);
});

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const box = $<HTMLTextAreaElement>("message");
  const text = box.value.trim();
  if (!text || live) return;
  box.value = "";
  void send(text, crypto.randomUUID());
});

$("message").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $<HTMLFormElement>("composer").requestSubmit();
  }
});

$("cancel").addEventListener("click", () => live?.abort.abort());

/** Stops a streaming reply (on sign-out). */
export function stopStreaming(): void {
  live?.abort.abort();
}

/** Sends one message and renders the reply as it streams; a retry reuses the client message id. */
async function send(text: string, clientMessageId: string, userItem?: HTMLLIElement): Promise<void> {
  $("chat-error").textContent = "";
  if (!currentSession) {
    try {
      const { session } = await client.chat.createSession({});
      if (!session) return;
      currentSession = session.id;
      showHeader(session);
      void loadSessions(true);
    } catch (err) {
      $("chat-error").textContent = words(err);
      return;
    }
  }
  const exchange: LiveExchange = { sessionId: currentSession, nodes: [], firstSequence: undefined, abort: new AbortController() };
  live = exchange;
  updateComposer();
  const mine = place(exchange, userItem ?? el("li", "user", text));
  mine.dataset.state = "sending";
  let reply: HTMLLIElement | undefined;
  let replyText = "";
  try {
    const events = client.chat.streamMessage({ sessionId: exchange.sessionId, clientMessageId, text }, { signal: exchange.abort.signal });
    for await (const res of events) {
      const ev = res.event;
      switch (ev.case) {
        case "userMessage":
          mine.dataset.state = "done";
          withIds(mine, ev.value);
          exchange.firstSequence = ev.value.sequence;
          break;
        case "textDelta":
          if (!reply) {
            reply = el("li", "model");
            replyText = "";
          }
          reply.dataset.state = "streaming";
          replyText += ev.value.text;
          reply.replaceChildren(renderMarkdown(replyText));
          place(exchange, reply);
          break;
        case "functionCall":
        case "functionResult":
          place(exchange, messageItem(ev.value));
          break;
        case "modelMessage": {
          // The committed message replaces what the deltas built (a replay has no deltas).
          const done = messageItem(ev.value);
          if (reply?.isConnected) reply.replaceWith(done);
          exchange.nodes = exchange.nodes.map((n) => (n === reply ? done : n));
          place(exchange, done);
          reply = undefined;
          break;
        }
        case "completed":
          break;
        default:
          break;
      }
    }
    void refreshUntilTitled(exchange.sessionId);
  } catch (err) {
    if (exchange.abort.signal.aborted) {
      if (reply) reply.dataset.state = "cancelled";
      mine.dataset.state = "done";
    } else {
      mine.dataset.state = "failed";
      if (reply) reply.dataset.state = "failed";
      if (currentSession === exchange.sessionId) {
        const p = $("chat-error");
        p.textContent = `${words(err)} `;
        p.append(
          Object.assign(
            button("Retry", "", () => {
              if (reply) reply.remove();
              void send(text, clientMessageId, mine);
            }),
            { id: "retry" },
          ),
        );
      }
    }
  } finally {
    if (live === exchange) live = undefined;
    updateComposer();
  }
}
