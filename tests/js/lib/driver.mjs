// The line protocol between a pytest test and a Node XMPP client: JSON objects, one a line.
// The client prints events on stdout ({"event": "online", ...}); the test writes commands on
// stdin ({"cmd": "message", "to": ..., "body": ...}). stderr carries diagnostics only.
import readline from "node:readline";

export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

export function fail(error) {
  emit("error", { message: String(error && error.stack ? error.stack : error) });
  process.exitCode = 1;
}

// Calls handle(command) for each command line, in order; a rejected promise is reported.
export function commands(handle) {
  const rl = readline.createInterface({ input: process.stdin });
  let chain = Promise.resolve();
  rl.on("line", (line) => {
    if (!line.trim()) return;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (e) {
      fail(`not JSON: ${line}`);
      return;
    }
    chain = chain.then(() => handle(cmd)).catch(fail);
  });
  rl.on("close", () => chain.then(() => handle({ cmd: "quit" })).catch(fail));
}

// Never hang a test run: the test's own timeouts are shorter, this is the last resort.
export function watchdog(seconds) {
  setTimeout(() => {
    emit("error", { message: `watchdog: still running after ${seconds} s` });
    process.exit(3);
  }, seconds * 1000).unref();
}
