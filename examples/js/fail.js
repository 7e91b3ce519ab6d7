// fail: logs a line, then throws; the invocation fails with the error's message.
function fl_main(input) {
  console.log("about to fail", { reason: input.reason ?? "on purpose" });
  throw new Error(`failed ${input.reason ?? "on purpose"}`);
}
