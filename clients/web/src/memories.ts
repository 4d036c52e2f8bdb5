// The memories screen: the facts the assistant remembers across sessions, newest first, each
// with a button to forget it.
import { $, button, client, el, when, words } from "./app.js";

const PAGE = 50;
let token = "";

async function loadPage(first: boolean): Promise<void> {
  $("memories-error").textContent = "";
  try {
    const res = await client.chat.listMemories({ pageSize: PAGE, pageToken: first ? "" : token });
    const items = res.memories.map((m) => {
      const li = el("li");
      li.dataset.id = m.id;
      li.append(el("span", "memory-content", m.content), el("small", "", ` remembered ${when(m.createTime)} `));
      li.append(
        button("Forget", "forget", async () => {
          try {
            await client.chat.deleteMemory({ memoryId: m.id });
            li.remove();
            $("memories-empty").hidden = $("memories").childElementCount > 0;
          } catch (err) {
            $("memories-error").textContent = words(err);
          }
        }),
      );
      return li;
    });
    if (first) $("memories").replaceChildren(...items);
    else $("memories").append(...items);
    token = res.nextPageToken;
    $("memories-more").hidden = token === "";
    $("memories-empty").hidden = $("memories").childElementCount > 0;
  } catch (err) {
    $("memories-error").textContent = words(err);
  }
}

/** Shows the first page of memories. */
export async function loadMemories(): Promise<void> {
  await loadPage(true);
}

$("memories-more").addEventListener("click", () => void loadPage(false));
