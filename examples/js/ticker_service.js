// ticker_service.js: a long-running JavaScript service (`fl svc create ticker
// examples/js/ticker_service.js`). Its main gets the service's environment as `config` and a
// `service` object: `service.stopping` turns true, and `service.stopped` settles, when the
// platform asks it to stop (a delete or an update); returning then is a normal exit.
//
// Configuration: TICK_MS (default 1000) between `tick N` lines, LABEL appended to each line,
// FAIL: throw an error with this message on start (an abnormal exit, restarted by the spec).
export default async function (config, service) {
  if (config.FAIL) throw new Error(config.FAIL);
  const every = Number(config.TICK_MS ?? 1000);
  const label = config.LABEL ? ` ${config.LABEL}` : "";
  let n = 0;
  while (!service.stopping) {
    n += 1;
    console.log(`tick ${n}${label}`);
    // Wake for the next tick or for the stop request, whichever comes first.
    await Promise.race([sleep(every), service.stopped]);
  }
  console.log(`stopping gracefully after ${n} ticks`);
}
