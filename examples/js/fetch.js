// fetch: requests `url` (through the function's egress allow-list; `method` and `body`
// optional) and returns the status and body; `times` repeats it, like the paper's network
// benchmark.
async function fl_main(input) {
  const times = Number.isInteger(input.times) ? input.times : 1;
  const init = { method: input.method ?? "GET", body: input.body, headers: { "content-type": "application/json" } };
  let last;
  for (let i = 0; i < times; i++) {
    const response = await fetch(input.url, init);
    last = { status: response.status, ok: response.ok, body: await response.json() };
  }
  return last;
}
