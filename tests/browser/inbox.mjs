// Drives the inbox page in Debian's headless Chromium through playwright-core. Run by
// tests/tests/inbox_browser.rs, which owns the gateway, the provider stand-in and the network
// cut; the two talk in lines: this script prints `ready`, `seen MS`, … on stdout and waits for
// the test's lines on stdin. Every wait has a deadline; a missed one exits non-zero.
//
// env: BASE (the page, through the test's cuttable proxy), EMAIL, PASSWORD, SHOT (png path).
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import readline from "node:readline";

const { BASE, EMAIL, PASSWORD, SHOT } = process.env;
const lines = readline.createInterface({ input: process.stdin });
const queue = [];
let waiter = null;
lines.on("line", (l) => (waiter ? (waiter(l), (waiter = null)) : queue.push(l)));
const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => (waiter = r)));
const say = (s) => console.log(s);

async function expectLine(word) {
  const l = await next();
  if (!l.startsWith(word)) throw new Error(`expected ${word}, got ${l}`);
  return l.slice(word.length).trim();
}

const userDataDir = mkdtempSync(join(tmpdir(), "dw-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1200, height: 720 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(BASE + "/");
  await page.fill("#login-email", EMAIL);
  await page.fill("#login-password", PASSWORD);
  await page.click("#login-submit");
  await page.waitForSelector('#conn-status[data-state="online"]', { timeout: 10000 });
  say("ready");

  // 1. An inbound SMS appears within a second of the webhook's 200.
  const body = await expectLine("sent");
  const t0 = Date.now();
  const conv = page.locator(".conv", { hasText: body });
  await conv.first().waitFor({ timeout: 1000 });
  say(`seen ${Date.now() - t0}`);
  const unread = await conv.first().locator(".unread").getAttribute("data-count");
  if (unread !== "1") throw new Error(`unread count ${unread}, want 1`);

  // 2. The agent opens it and replies; the reply shows with its first tick.
  await conv.first().click();
  await page.locator(".msg.inbound", { hasText: body }).waitFor({ timeout: 5000 });
  await page.fill("#reply-body", "Your parcel arrives tomorrow.");
  await page.click("#reply-send");
  const reply = page.locator(".msg.outbound", { hasText: "Your parcel arrives tomorrow." });
  await reply.waitFor({ timeout: 5000 });
  say("replied");

  // 3. Ticks advance as the provider's status callbacks arrive.
  for (;;) {
    const l = await next();
    if (l === "done") break;
    const [, status] = l.split(" ");
    await page.locator(`.msg.outbound .ticks[data-status="${status}"]`).waitFor({ timeout: 5000 });
    say(`tick ${status}`);
  }

  // 4. The network is cut (the test closes the proxy's connections and refuses new ones),
  //    messages arrive meanwhile, the network comes back: all of them show, each once.
  await expectLine("cut");
  await page.waitForSelector('#conn-status[data-state="offline"]', { timeout: 10000 });
  say("offline");
  const during = (await expectLine("restored")).split("|");
  await page.waitForSelector('#conn-status[data-state="online"]', { timeout: 15000 });
  for (const text of during) {
    const m = page.locator(".msg.inbound", { hasText: text });
    await m.first().waitFor({ timeout: 5000 });
    const n = await m.count();
    if (n !== 1) throw new Error(`"${text}" shown ${n} times`);
  }
  say("caught up");
  await page.screenshot({ path: SHOT });
  say("shot");

  // 5. A caller's voicemail: its conversation shows up, the play button fetches the
  //    recording with the session token and the browser decodes it (its length is reported).
  const caller = await expectLine("voicemail");
  const vconv = page.locator(".conv", { hasText: caller });
  await vconv.first().waitFor({ timeout: 5000 });
  await vconv.first().click();
  // The call's turns say who spoke.
  const spoke = page.locator(".msg.outbound .speaker", { hasText: "Receptionist" });
  await spoke.waitFor({ timeout: 5000 });
  await page.locator(".msg.inbound .speaker", { hasText: "Voicemail from the caller" }).waitFor({ timeout: 5000 });
  const button = page.locator(".msg.inbound button.voicemail");
  await button.waitFor({ timeout: 5000 });
  await button.click();
  const audio = page.locator(".msg.inbound audio");
  await audio.waitFor({ timeout: 5000 });
  const seconds = await audio.evaluate((a) => new Promise((resolve, reject) => {
    if (a.readyState >= 1) return resolve(a.duration);
    a.addEventListener("loadedmetadata", () => resolve(a.duration));
    a.addEventListener("error", () => reject(new Error("audio error " + (a.error && a.error.code))));
  }));
  say(`played ${seconds}`);
  // 5b. A live update of the same thread while the player is open keeps that player (the
  //     thread re-renders only the messages that changed).
  await audio.evaluate((a) => { a.dataset.mark = "kept"; });
  const later = await expectLine("update");
  await page.locator(".msg", { hasText: later }).waitFor({ timeout: 5000 });
  const kept = await page.locator(".msg.inbound audio[data-mark=kept]").count();
  if (kept !== 1) throw new Error("the open voicemail player was replaced by a live update");
  say("player kept");

  // 5c. An HTML email: its text in the thread, its sanitised HTML on demand in a sandboxed
  //     frame.
  const writer = await expectLine("email");
  const mconv = page.locator(".conv", { hasText: writer });
  await mconv.first().waitFor({ timeout: 5000 });
  await mconv.first().click();
  const toggle = page.locator(".msg.inbound button.formatted");
  await toggle.waitFor({ timeout: 5000 });
  await toggle.click();
  const frame = page.locator("iframe.mail-html");
  await frame.waitFor({ timeout: 5000 });
  if ((await frame.getAttribute("sandbox")) !== "") throw new Error("the mail frame is not sandboxed");
  const bold = await page.frameLocator("iframe.mail-html").locator("b").textContent({ timeout: 5000 });
  say(`formatted ${bold}`);

  // 5d. A broadcast shows in the panel as it runs, and its confirmation as it comes.
  const alert = await expectLine("broadcast");
  const item = page.locator(".broadcast", { hasText: alert });
  await item.locator(".counts", { hasText: "1 sent" }).waitFor({ timeout: 10000 });
  say("broadcast sent");
  await expectLine("acked");
  await page.locator(`.broadcast[data-state="done"]`, { hasText: alert })
    .locator(".counts", { hasText: "1 confirmed" }).waitFor({ timeout: 10000 });
  // The reply also opened a conversation, which the queue may assign a moment later; let the
  // list settle so its re-render cannot take the focus from under the keyboard step.
  await page.locator(".conv", { hasText: "+15550009999" }).first().waitFor({ timeout: 5000 });
  await page.waitForTimeout(1500);
  say("broadcast confirmed");

  // 6. Keyboard only: j/k move through the list, Enter opens, r goes to the reply box,
  //    Ctrl+Enter sends, e resolves, / goes to search.
  const customer = await expectLine("keys");
  await page.keyboard.press("Escape");
  let found = false;
  for (let i = 0; i < 10 && !found; i++) {
    await page.keyboard.press("j");
    found = await page.evaluate((c) => {
      const el = document.activeElement;
      return !!el && el.classList.contains("conv") && el.textContent.includes(c);
    }, customer);
  }
  if (!found) throw new Error("j never reached the customer's conversation");
  await page.keyboard.press("Enter");
  await page.locator("#thread-title", { hasText: customer }).waitFor({ timeout: 5000 });
  await page.keyboard.press("r");
  if (await page.evaluate(() => document.activeElement.id) !== "reply-body") throw new Error("r did not focus the reply box");
  await page.keyboard.type("Sent from the keyboard.");
  await page.keyboard.press("Control+Enter");
  await page.locator(".msg.outbound", { hasText: "Sent from the keyboard." }).waitFor({ timeout: 5000 });
  await page.keyboard.press("Escape");
  await page.keyboard.press("e");
  await page.locator("#btn-resolve", { hasText: "Reopen" }).waitFor({ timeout: 5000 });
  await page.keyboard.press("/");
  if (await page.evaluate(() => document.activeElement.id) !== "search") throw new Error("/ did not focus search");
  await page.keyboard.press("Escape");
  say("keyboard ok");

  // 7. A phone: one column, the open thread alone, back to the list and in again, nothing
  //    wider than the screen.
  await page.setViewportSize({ width: 390, height: 800 });
  const visible = (sel) => page.locator(sel).isVisible();
  if (!(await visible("#thread")) || (await visible("#lists"))) throw new Error("phone: the open thread should fill the screen");
  await page.click("#back");
  if (!(await visible("#lists")) || (await visible("#thread"))) throw new Error("phone: back should show the list alone");
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  if (wide > 390) throw new Error(`phone: the page is ${wide}px wide`);
  await page.locator(".conv", { hasText: customer }).first().click();
  await page.locator("#thread-title", { hasText: customer }).waitFor({ timeout: 5000 });
  if (!(await visible("#thread")) || (await visible("#lists"))) throw new Error("phone: opening a conversation should show it alone");
  const box = await page.locator("#reply-body").boundingBox();
  if (!box || box.x < 0 || box.x + box.width > 390) throw new Error("phone: the reply box is off screen");
  say("phone ok");
} catch (e) {
  console.error("browser test failed:", e.message);
  process.exitCode = 1;
} finally {
  await context.close();
  lines.close();
}
