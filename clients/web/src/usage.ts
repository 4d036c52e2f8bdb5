// The usage screen: this month's model usage by day and model, the monthly token budget (set,
// change, clear) and how much of it is spent.
import { $, client, el, showFieldErrors, when, words } from "./app.js";
import type { AssistdClient } from "@assistd/client";

type Budget = NonNullable<Awaited<ReturnType<AssistdClient["apiKeys"]["getTokenBudget"]>>["budget"]>;

const n = (v: bigint | number) => Number(v).toLocaleString("en-US");

function showBudget(b: Budget | undefined): void {
  if (!b) return;
  const limit = Number(b.monthlyTokenLimit);
  $("budget-limit").textContent = limit > 0 ? `${n(limit)} tokens a month` : "no budget";
  $("budget-used").textContent = `${n(b.usedTokenCount)} tokens`;
  $("budget-resets").textContent = when(b.periodEndTime);
  $("budget-exhausted").hidden = !b.exhausted;
  $("budget-clear").hidden = limit === 0;
  const meter = $<HTMLMeterElement>("budget-meter");
  meter.hidden = limit === 0;
  meter.max = Math.max(limit, 1);
  meter.value = Math.min(Number(b.usedTokenCount), meter.max);
}

/** Loads this month's usage and the budget. */
export async function loadUsage(): Promise<void> {
  $("usage-error").textContent = "";
  $("budget-error").textContent = "";
  try {
    const [usage, { budget }] = await Promise.all([client.apiKeys.getUsage({}), client.apiKeys.getTokenBudget({})]);
    $("usage-range").textContent = `${usage.startDate} to ${usage.endDate} (UTC)`;
    $("usage-rows").replaceChildren(
      ...usage.records.map((r) => {
        const tr = el("tr");
        for (const cell of [r.date, r.model, n(r.requestCount), n(r.promptTokenCount), n(r.outputTokenCount), n(r.totalTokenCount)]) tr.append(el("td", "", cell));
        return tr;
      }),
    );
    $("usage-empty").hidden = usage.records.length > 0;
    $("usage-total-requests").textContent = n(usage.totalRequestCount);
    $("usage-total-prompt").textContent = n(usage.totalPromptTokenCount);
    $("usage-total-output").textContent = n(usage.totalOutputTokenCount);
    $("usage-total-tokens").textContent = n(usage.totalTokenCount);
    showBudget(budget);
    $("screen-usage").dataset.loaded = "true";
  } catch (err) {
    $("usage-error").textContent = words(err);
  }
}

$("budget-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("budget-error").textContent = "";
  const raw = $<HTMLInputElement>("budget-input").value.trim();
  try {
    const { budget } = await client.apiKeys.setTokenBudget({ monthlyTokenLimit: /^-?\d+$/.test(raw) ? BigInt(raw) : 0n });
    showBudget(budget);
    $<HTMLInputElement>("budget-input").value = "";
  } catch (err) {
    showFieldErrors(err, { monthly_token_limit: "budget-error" }, $("budget-error"));
  }
});

$("budget-clear").addEventListener("click", async () => {
  $("budget-error").textContent = "";
  try {
    const { budget } = await client.apiKeys.clearTokenBudget({});
    showBudget(budget);
  } catch (err) {
    $("budget-error").textContent = words(err);
  }
});
