// XEP-0004 data forms: what a room configuration, an ad-hoc command or a search answers with,
// read into plain objects, and submitted back as `{ var: value }`.
import { NS } from "./ns.js";
import { attrs, type Element, xml } from "./xml.js";

export type FieldType =
  | "boolean" | "fixed" | "hidden" | "jid-multi" | "jid-single" | "list-multi" | "list-single"
  | "text-multi" | "text-private" | "text-single";

export interface FormField {
  var?: string;
  type: FieldType;
  label?: string;
  desc?: string;
  required: boolean;
  values: string[];
  options: { value: string; label?: string }[];
}

export interface DataForm {
  type: "form" | "submit" | "cancel" | "result";
  title?: string;
  instructions: string[];
  fields: FormField[];
  /** a result table (<reported/> + <item/>s): one record per item */
  items: Record<string, string[]>[];
}

function parseField(f: Element): FormField {
  const field: FormField = {
    type: (f.attrs.type ?? "text-single") as FieldType,
    required: !!f.getChild("required"),
    values: f.getChildren("value").map((v) => v.text()),
    options: f.getChildren("option").map((o) => ({ value: o.getChildText("value") ?? "", ...(o.attrs.label ? { label: o.attrs.label } : {}) })),
  };
  if (f.attrs.var) field.var = f.attrs.var;
  if (f.attrs.label) field.label = f.attrs.label;
  const desc = f.getChildText("desc");
  if (desc !== null) field.desc = desc;
  return field;
}

/** The data form in `parent` (any element holding an <x xmlns='jabber:x:data'/>), if any. */
export function parseForm(parent: Element | undefined): DataForm | undefined {
  const x = parent?.getChild("x", NS.dataForms);
  if (!x) return undefined;
  const form: DataForm = {
    type: (x.attrs.type ?? "form") as DataForm["type"],
    instructions: x.getChildren("instructions").map((i) => i.text()),
    fields: x.getChildren("field").map(parseField),
    items: x.getChildren("item").map((item) => {
      const rec: Record<string, string[]> = {};
      for (const f of item.getChildren("field")) if (f.attrs.var) rec[f.attrs.var] = f.getChildren("value").map((v) => v.text());
      return rec;
    }),
  };
  const title = x.getChildText("title");
  if (title !== null) form.title = title;
  return form;
}

export type FormValue = string | number | boolean | string[];

/** A form's values as a record: single values as strings (booleans as true/false), multi as arrays. */
export function formValues(form: DataForm): Record<string, string | boolean | string[]> {
  const out: Record<string, string | boolean | string[]> = {};
  for (const f of form.fields) {
    if (!f.var) continue;
    if (f.type === "boolean") out[f.var] = f.values[0] === "1" || f.values[0] === "true";
    else if (f.type.endsWith("-multi")) out[f.var] = f.values;
    else out[f.var] = f.values[0] ?? "";
  }
  return out;
}

/**
 * A submitted form. `formType` becomes the hidden FORM_TYPE field; values: booleans as 1/0,
 * numbers as decimal text, arrays as one <value/> each.
 */
export function submitForm(values: Record<string, FormValue | undefined>, formType?: string): Element {
  const fields = Object.entries(values)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      const list = Array.isArray(v) ? v : [typeof v === "boolean" ? (v ? "1" : "0") : String(v)];
      return xml("field", { var: k }, ...list.map((s) => xml("value", {}, s)));
    });
  return xml(
    "x",
    { xmlns: NS.dataForms, type: "submit" },
    formType ? xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, formType)) : null,
    ...fields,
  );
}

export { attrs };
