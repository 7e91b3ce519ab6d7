// sleep: waits 3 seconds (or `seconds`) without holding a thread, as the paper's workload.
export default async function (input) {
  const seconds = Number.isFinite(input.seconds) ? input.seconds : 3;
  await sleep(seconds * 1000);
  return { payload: `Slept for ${seconds} seconds` };
}
