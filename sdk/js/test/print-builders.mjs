// Prints each built request's payload as a JSON line {name, ns, xml}, for XSD validation.
import { builders, payload } from "./builders.mjs";

for (const [name, build] of Object.entries(builders)) {
  const el = payload(build());
  process.stdout.write(JSON.stringify({ name, ns: el.attrs.xmlns, xml: el.toString() }) + "\n");
}
